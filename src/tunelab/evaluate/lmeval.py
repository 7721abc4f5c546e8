"""The lm-evaluation-harness bridge: lm-eval tasks by name, scored like native tunelab tasks.

lm-eval builds the prompts and scores each document with its own HF wrapper (HFLM), given the
model object tunelab loaded for the spec, so a base model, an adapter (LoRA-family merged as for
native tasks; prompt/prefix tuning as PEFT models, whose virtual tokens HFLM skips itself) or a
run's final weights are what it scores. From lm-eval's logged samples, tunelab
writes the same per-example rows as its own tasks (<output>/<task>.examples.jsonl: key, prompt,
prediction, choices/logprobs or references, scores) and computes every corpus value and CI
itself (bootstrap_ci over the per-example scores), so forgetting, compare, the paired tests and
the report need nothing special. lm-eval's own aggregate, its version and a hash of the task
config are kept beside them.

What is not done, on purpose:
- metrics whose lm-eval aggregation is not a mean of per-document scores (corpus BLEU, F1, MCC,
  perplexity) have no per-example score to pair on: only lm-eval's aggregate is recorded, and a
  task with no mean metric at all is refused before the model loads;
- the contamination guard: lm-eval builds its own documents, so they cannot be compared with a
  run's training keys; each entry says `contamination: not checked`;
- the eval cache: lm-eval runs the model every time.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.config.base import UserError, check_path_name

MISSING = "lm-evaluation-harness is not installed (needed for --lm-eval / lm_eval:): pip install 'tunelab[lmeval]'"
# lm-eval output types whose logged samples give one row per document with per-document scores.
KINDS = {"multiple_choice": "loglikelihood", "loglikelihood": "loglikelihood", "generate_until": "generate"}
NOT_CHECKED = {"checked": False, "checked_against": [], "overlap": None,
               "note": "not checked: lm-eval builds its own documents, which tunelab cannot compare with a run's "
                       "training keys"}


def require_lm_eval() -> str:
    """lm-eval's version, or the one-line install hint (before any model loads)."""
    try:
        import lm_eval  # noqa: F401
        from importlib.metadata import version
    except ImportError:
        raise UserError(MISSING) from None
    return version("lm_eval")


def settings_of(section, config_dir: str = ".") -> dict | None:
    """{"tasks", "include", "num_fewshot"} from an lm_eval: section (a mapping or LmEvalConfig), or
    None when it names no task; a relative include folder is relative to the config's folder."""
    get = section.get if isinstance(section, dict) else (lambda k: getattr(section, k, None))
    tasks = split_names(get("tasks") if section is not None else None)
    if not tasks:
        return None
    folder = get("include")
    if folder and not Path(folder).expanduser().is_absolute():
        folder = str(Path(config_dir) / folder)
    return {"tasks": tasks, "include": str(Path(folder).expanduser()) if folder else None,
            "num_fewshot": get("num_fewshot")}


def split_names(value) -> list[str]:
    """Task names from "a,b", ["a", "b,c"] or None, in order, without repeats."""
    items = [value] if isinstance(value, str) else list(value or [])
    return list(dict.fromkeys(n.strip() for item in items for n in str(item).split(",") if n.strip()))


@dataclass
class Prepared:
    """lm-eval tasks loaded (datasets read) and checked, before the model loads."""

    settings: dict
    version: str
    manager: object
    tasks: dict  # leaf task name -> lm-eval Task
    groups: dict = field(default_factory=dict)  # group name -> leaf task names
    metrics: dict = field(default_factory=dict)  # leaf task name -> its mean metrics, in lm-eval's order


def prepare_section(section, config_dir: str = ".", taken: set[str] | tuple = ()) -> Prepared | None:
    """load_lm_eval_tasks() for a config's lm_eval: section (or the CLI's settings); None when it names
    no task."""
    settings = settings_of(section, config_dir=config_dir) if section else None
    return load_lm_eval_tasks(settings, taken) if settings else None


def load_lm_eval_tasks(settings: dict, taken: set[str] | tuple = ()) -> Prepared:
    """Check and load every lm-eval task (names, datasets, output types, metrics) with no model loaded."""
    version = require_lm_eval()
    folder = settings.get("include")
    if folder and not Path(folder).is_dir():
        raise UserError(f"lm-eval task folder {folder}: no such folder (--lm-eval-include, lm_eval.include)")
    with _rng_kept():  # building tasks draws from Python's global generator too
        manager, loaded = _load(settings["tasks"], folder)
    prepared = Prepared(settings, version, manager, loaded["tasks"], loaded.get("group_map") or {})
    for name, task in prepared.tasks.items():
        check_path_name(name, "lm-eval task name")
        if name in taken:
            raise UserError(f"lm-eval task '{name}' has the name of a tunelab task: rename that one (name=...)")
        prepared.metrics[name] = _mean_metrics(name, task)
    return prepared


def _load(names: list[str], folder: str | None):
    """(TaskManager, loaded tasks). Indexing lm-eval's ~15,000 built-in task files takes ~20 s,
    so tasks found in the include folder alone are loaded from an index of that folder only."""
    from lm_eval.tasks import TaskManager

    if folder:
        local = TaskManager(include_path=folder, include_defaults=False)
        if all(n in local.all_tasks for n in names):
            loaded = _load_tasks(local, names, missing_ok=True)
            if loaded is not None:
                return local, loaded
    manager = TaskManager(include_path=folder) if folder else TaskManager()
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        hints = [f"'{n}'" + (f" (did you mean '{c[0]}'?)" if (c := difflib.get_close_matches(n, manager.all_tasks, 1))
                              else "") for n in unknown]
        where = f"lm-eval's tasks or {folder}" if folder else "lm-eval's tasks (a local task folder: --lm-eval-include)"
        raise UserError(f"unknown lm-eval task {', '.join(hints)}: not in {where}")
    return manager, _load_tasks(manager, names)


def _load_tasks(manager, names: list[str], missing_ok: bool = False) -> dict | None:
    """manager.load(names); a dataset that cannot be read offline or a broken YAML is one line, before
    the model loads. missing_ok: None when a task refers to a name this index lacks (a local group of
    built-in tasks), so the caller can retry with the full index."""
    try:
        return manager.load(names)
    except Exception as exc:
        if missing_ok and isinstance(exc, KeyError):
            return None
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"lm-eval could not load {', '.join(names)}: {type(exc).__name__}: {first}") from None


def _mean_metrics(name: str, task) -> list[str]:
    """The task's metrics that lm-eval aggregates as a plain mean: the ones with per-example scores."""
    from lm_eval.api.metrics import mean

    output_type = task.get_config("output_type")
    if output_type not in KINDS:
        raise UserError(f"lm-eval task '{name}': output type '{output_type}' is not supported (a corpus statistic "
                        f"over whole documents); supported: {', '.join(KINDS)}")
    aggregation = task.aggregation()
    means = [m for m, fn in aggregation.items() if fn is mean]
    if not means:
        raise UserError(f"lm-eval task '{name}': none of its metrics ({', '.join(aggregation)}) is a mean of "
                        "per-document scores, so tunelab has nothing to compute CIs and paired tests from")
    return means


def run_lm_eval(prepared: Prepared, model, tokenizer, limit: int | None, batch_size: int,
                log_file: Path | None = None) -> dict:
    """simple_evaluate through HFLM on the already-loaded model; lm-eval's own terminal output
    (progress bars, warnings) goes to `log_file` when given, so tunelab's lines stay readable."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    with contextlib.ExitStack() as quiet:
        quiet.enter_context(_rng_kept())
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            sink = quiet.enter_context(open(log_file, "w", encoding="utf-8"))
            quiet.enter_context(contextlib.redirect_stderr(sink))
            quiet.enter_context(contextlib.redirect_stdout(sink))
        wrapper = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        # bootstrap_iters=0: lm-eval's stderr is skipped; tunelab's CIs come from the logged samples
        return lm_eval.simple_evaluate(model=wrapper, tasks=list(prepared.tasks.values()),
                                       task_manager=prepared.manager, num_fewshot=prepared.settings.get("num_fewshot"),
                                       limit=limit, log_samples=True, bootstrap_iters=0, apply_chat_template=False)


@contextlib.contextmanager
def _rng_kept():
    """simple_evaluate seeds Python's, NumPy's and torch's global generators (its reproducible
    defaults); the caller's streams (a training run's dropout, for the forgetting: hook) continue
    as if lm-eval had not run."""
    import random

    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def _number(value) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _doc_row(index: int, split: str, name: str, output_type: str, samples: list[dict]) -> dict:
    """One document's row, shaped like the engine's rows (key, prompt, prediction, scores...);
    `samples` are its logged samples, one per lm-eval filter."""
    first = samples[0]
    args = [list(a) for a in first["arguments"]]
    target = first["target"]
    row = {"index": index, "key": f"{split}:{first['doc_id']}:{first['doc_hash'][:12]}", "doc_id": first["doc_id"],
           "source": f"lm-eval:{name}:{split}:{first['doc_id']}", "doc_hash": first["doc_hash"],
           "prompt_hash": first["prompt_hash"], "prompt": args[0][0], "target": target, "label": None}
    if output_type == "multiple_choice":
        choices = [a[1] for a in args]
        logprobs = [float(r[0]) for r in first["filtered_resps"]]
        gold = [target] if isinstance(target, int) else [t for t in target if isinstance(t, int)] \
            if isinstance(target, list) else []
        row.update(choices=choices, logprobs=logprobs, answer_index=gold[0] if len(gold) == 1 else gold or None,
                   prediction=choices[max(range(len(choices)), key=logprobs.__getitem__)],
                   references=[choices[g] for g in gold if 0 <= g < len(choices)] or [str(target)])
    elif output_type == "loglikelihood":  # one continuation: its log-likelihood and whether greedy decoding gives it
        logprob, greedy = first["filtered_resps"][0]
        row.update(continuation=args[0][1], logprobs=[float(logprob)], is_greedy=bool(greedy),
                   prediction=args[0][1] if greedy else None, references=[args[0][1]])
    else:
        row.update(prediction=first["filtered_resps"][0],
                   predictions={s["filter"]: s["filtered_resps"][0] for s in samples},
                   references=[str(t) for t in target] if isinstance(target, list) else [str(target)])
    row["scores"] = {}
    for s in samples:  # lm-eval names a metric after a filter "metric,filter"; "none" is the plain name
        for metric in s["metrics"]:
            value = _number(s.get(metric))
            if value is not None:
                row["scores"][metric if s["filter"] == "none" else f"{metric},{s['filter']}"] = value
    return row


def task_rows(name: str, split: str, output_type: str, samples: list[dict]) -> list[dict]:
    by_doc: dict = {}
    for s in samples:
        by_doc.setdefault(s["doc_id"], []).append(s)
    return [_doc_row(i, split, name, output_type, group) for i, (_, group) in enumerate(sorted(by_doc.items()))]


def task_metrics(rows: list[dict], means: list[str], filters: list[str], higher: dict, aggregate: dict,
                 n_resamples: int, confidence: float) -> dict:
    """Each mean metric (per filter) over the rows' scores, in scoring.py's shape, with its
    bootstrap CI; lm-eval's own value beside it (the same mean, from its aggregation)."""
    import numpy as np

    from tunelab.metrics import bootstrap_ci

    out = {}
    for flt in filters:
        for metric in means:
            name = metric if flt == "none" else f"{metric},{flt}"
            values = [r["scores"].get(name) for r in rows]
            if not values or any(v is None for v in values):
                continue  # not a number on some document (lm-eval's aggregate is still recorded)
            arr = np.asarray(values, dtype=float)
            ci = bootstrap_ci(arr, n_resamples=n_resamples, confidence=confidence) if n_resamples else None
            out[name] = {"value": float(arr.mean()), "ci": None if ci is None else [float(ci[0]), float(ci[1])],
                         "n": len(arr), "higher_is_better": bool(higher.get(metric, True)),
                         "lm_eval_value": _number(aggregate.get(f"{metric},{flt}")),
                         "note": "mean of lm-eval's per-document scores; CI: tunelab's bootstrap"}
    return out


def config_digest(config: dict) -> str:
    """SHA-256 of lm-eval's task config as it reports it; function reprs lose their memory
    address, so the same task gives the same hash in every process."""
    text = json.dumps(config, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(re.sub(r" at 0x[0-9a-fA-F]+", "", text).encode("utf-8")).hexdigest()


def task_entry(prepared: Prepared, name: str, evaluated: dict, n_resamples: int, confidence: float,
               versions: dict) -> tuple[dict, list[dict]]:
    """(results.json entry, per-example rows) of one lm-eval task, shaped as harness.evaluate's."""
    from tunelab.evaluate.provenance import keys_digest

    task = prepared.tasks[name]
    output_type = task.get_config("output_type")
    split = task.get_config("test_split") if task.has_test_docs() else task.get_config("validation_split")
    samples = evaluated["samples"][name]
    rows = task_rows(name, split, output_type, samples)
    filters = list(dict.fromkeys(s["filter"] for s in samples))
    aggregate = evaluated["results"].get(name, {})
    higher = evaluated.get("higher_is_better", {}).get(name, {})
    metrics = task_metrics(rows, prepared.metrics[name], filters, higher, aggregate, n_resamples, confidence)
    if not metrics:
        raise UserError(f"lm-eval task '{name}': its mean metrics ({', '.join(prepared.metrics[name])}) are not "
                        "numbers on every document; nothing to score")
    config = evaluated.get("configs", {}).get(name, {})
    groups = [g for g, kids in prepared.groups.items() if name in kids]
    entry = {"task": name, "source": "lm-eval", "kind": KINDS[output_type], "data_kind": f"lm-eval {output_type}",
             "split": split, "n": len(rows), "metrics": metrics, "primary_metric": next(iter(metrics)),
             "labels": None, "example_keys_sha256": keys_digest([r["key"] for r in rows]),
             "contamination": dict(NOT_CHECKED),
             "config": {"lm_eval_task": name, "include": prepared.settings.get("include"),
                        "num_fewshot": prepared.settings.get("num_fewshot")},
             "generation": config.get("generation_kwargs") if output_type == "generate_until" else None,
             "chat_template": {"applied": False, "requested": False, "template": None,
                               "note": "lm-eval apply_chat_template=False"},
             "data_counts": {"documents": evaluated.get("n-samples", {}).get(name)},
             "cache": {"hits": 0, "misses": len(rows), "file": None, "note": "lm-eval tasks are not cached"},
             "versions": {**versions, "lm_eval": prepared.version},
             "lm_eval": {"version": prepared.version, "task_version": evaluated.get("versions", {}).get(name),
                         "config_sha256": config_digest(config), "output_type": output_type,
                         "n_shot": evaluated.get("n-shot", {}).get(name), "groups": groups,
                         "aggregate": aggregate, "higher_is_better": higher, "config": config}}
    return entry, rows


def score_lm_eval_tasks(prepared: Prepared, lm, results: dict, out: Path | None, *, limit: int | None,
                        batch_size: int, n_resamples: int, confidence: float) -> list[str]:
    """Run every prepared task (one lm-eval call) and add each to `results["tasks"]`, writing
    <out>/<task>.examples.jsonl (and lm-eval's own output to <out>/lm_eval.log). Returns the names."""
    from tunelab.evaluate.engine import log
    from tunelab.files import write_jsonl

    log(f"lm-eval {prepared.version}: {', '.join(prepared.tasks)}"
        + (f" (its output: {out / 'lm_eval.log'})" if out is not None else ""))
    evaluated = run_lm_eval(prepared, lm.model, lm.tokenizer, limit, batch_size,
                            out / "lm_eval.log" if out is not None else None)
    names = [n for n in prepared.tasks if n in evaluated.get("samples", {})]
    for name in names:
        entry, rows = task_entry(prepared, name, evaluated, n_resamples, confidence, results.get("versions", {}))
        if out is not None:
            write_jsonl(out / f"{name}.examples.jsonl", rows)
            entry["examples_file"] = f"{name}.examples.jsonl"
        results["tasks"][name] = entry
        summary = ", ".join(f"{m}={e['value']:.4g}" for m, e in entry["metrics"].items())
        log(f"{name}: n={entry['n']} ({entry['split']} split, lm-eval) {summary}; contamination not checked")
    return names
