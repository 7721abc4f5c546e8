"""`evaluate(...)`: score a model, adapter or run on tasks; write results JSON + per-example JSONL.

    <output_dir>/results.json              every task: metrics {value, ci, n}, split, example keys,
                                           config, model identity (file hashes), contamination check,
                                           and what was scored out of what (n_available, limit,
                                           split_rule, scored: see scored_fields)
    <output_dir>/<task>.examples.jsonl     one line per example: prompt, prediction, references, scores

Order of work: every task is expanded, named and built (tokenizer only) and checked against the
model's training examples before any model runs, so a typo in the last task or a contaminated
split costs nothing. A run's model (`run=` or a folder inside a run) is evaluated with the run's
own resolved config: its data tasks by bare name, its split ratios and seed. Then each task is
scored by the engine (engine.score_examples) and its files written at once, atomically.

Under several processes (`world`, shard.py; `tunelab eval` under `accelerate launch`) every
process builds the same examples and loads its own copy of the model, the engine splits each
task's batches among them and gathers the rows, and the main process alone writes and logs: the
files are the ones one process writes (`work` sums every process's work and says how many).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

from tunelab.config.base import UserError, check_path_name
from tunelab.config.data import SPLIT_NAMES, SplitConfig
from tunelab.config.evaluate import GenerationConfig
from tunelab.data.build import carve_plan, split_ratios
from tunelab.data.templates import absolute_choice
from tunelab.evaluate.engine import log, score_examples
from tunelab.evaluate.generation import WorkCounter
from tunelab.evaluate.loading import LazyModel, ModelSpec, model_spec, spec_fingerprint
from tunelab.evaluate.provenance import (keys_digest, model_identity, overlap_report,
                                         refuse_overlap, training_keys, training_runs)
from tunelab.evaluate.recipes import data_task_config, expand_task
from tunelab.evaluate.shard import ONE, World, total_work
from tunelab.files import write_json, write_jsonl
from tunelab.runfolder import RunFolder

DEFAULT_SEED = 42  # the data pipeline's default split seed, for data outside any run


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("tunelab", "torch", "transformers", "peft", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def training_data(cfg) -> dict:
    """A training config's data tasks (by name), split settings and split seed: eval splits that match."""
    data = getattr(cfg, "data", None)
    tasks = {t.name: t.model_dump(exclude_none=True) for t in getattr(data, "tasks", []) or []}
    split = getattr(data, "split", None)
    seed = split.seed if split is not None and split.seed is not None else cfg.seed
    # The run's own tasks are built exactly as training built them (same length limit, leak
    # removal, bad-record policy), so their examples are the ones validation saw. Other tasks keep
    # the eval defaults: their prompts are not cut to the training length.
    settings = {"max_length": data.max_length, "overlength": data.overlength, "leak_check": data.leak_check,
                "on_error": data.on_error} if data is not None else None
    # the config's chat template, for every task it scores (a Jinja file by its absolute path)
    template = absolute_choice(getattr(data, "chat_template", None), getattr(cfg, "config_dir", "."))
    return {"data_tasks": tasks, "data_split": split, "seed": seed, "data_settings": settings,
            "chat_template": template}


def run_training_data(spec: ModelSpec) -> dict | None:
    """training_data() of the run the model comes from, read from its config.resolved.yaml."""
    run = RunFolder.of(spec.run) if spec.run else (RunFolder.enclosing(spec.adapter)
                                                   or RunFolder.enclosing(spec.full_model))
    if run is None or not run.has_config():
        return None
    from tunelab.config import load_config

    raw = {k: v for k, v in run.config.items() if k not in ("stages", "continual", "search")}
    cfg = load_config(data=raw)
    # The run's data paths are relative to its own config file's folder, not to this command's.
    base = Path(run.env().get("config_dir") or ".")
    own = training_data(cfg)
    own["data_tasks"] = {name: absolute_paths(task, base) for name, task in own["data_tasks"].items()}
    own["chat_template"] = absolute_choice(cfg.data.chat_template, base)
    return own


def absolute_paths(task: dict, base: Path) -> dict:
    """A data-task mapping with its source paths made absolute against `base`."""
    def fix(src):
        if isinstance(src, list):
            return [fix(s) for s in src]
        if isinstance(src, dict) and src.get("path") and not Path(src["path"]).expanduser().is_absolute():
            return {**src, "path": str(base / src["path"])}
        return src

    task = dict(task)
    if task.get("source") is not None:
        task["source"] = fix(task["source"])
    if task.get("splits"):
        task["splits"] = {k: fix(v) for k, v in task["splits"].items()}
    return task


def expand_tasks(tasks: list, config_dir: str, data_tasks: dict | None) -> list[dict]:
    """Every task spec, with unique names that are safe as file names; before any work."""
    specs = [expand_task(task, config_dir, data_tasks) for task in tasks]
    seen: set[str] = set()
    for spec in specs:
        check_path_name(spec["name"], "eval task name")
        if spec["name"] in seen:
            raise UserError(f"two tasks are named '{spec['name']}': give one of them another name (name=...)")
        seen.add(spec["name"])
    return specs


def own_task(spec: dict, data_tasks: dict | None) -> bool:
    """Whether an eval task is one of the training config's data tasks (same name, same data)."""
    task = (data_tasks or {}).get(spec["name"])
    return task is not None and all(spec.get(k) == task.get(k) for k in ("kind", "source", "splits", "fields"))


def load_examples(spec: dict, tokenizer, split: str, limit: int | None, config_dir: str, seed: int,
                  data_split=None, max_length: int = 4096, settings: dict | None = None,
                  chat_template: str | None = None):
    """Build a task's examples with the data pipeline; (task data, split name, examples).
    settings: the training config's data settings (max_length, overlength, leak_check, on_error);
    chat_template: data.chat_template's choice (None: the tokenizer's own)."""
    from tunelab.data import build_task

    options = dict(settings) if settings else {"max_length": max_length}
    data = build_task(data_task_config(spec), tokenizer, config_dir, seed=seed, split=data_split,
                      chat_template=chat_template, **options)
    split = spec.get("split", split)
    if split not in data.splits:
        raise UserError(f"task '{spec['name']}': no split '{split}' (have {', '.join(data.splits)})")
    examples = data.splits[split]
    if not examples:
        raise UserError(f"task '{spec['name']}': the {split} split is empty")
    return data, split, examples[:limit] if limit else examples


def limit_origin(key: str, section=None) -> dict:
    """Where a limit came from, for results.json: `key` names the setting ("--limit", "eval.limit",
    "forgetting.limit"); with its config section, whether the value is the schema's default. A
    default that cuts a task's examples must say so wherever the result prints."""
    default = section is not None and section.limit == type(section).model_fields["limit"].default
    return {"from": key, "default": default}


def split_rule(spec: dict, split: str, data_split, seed: int) -> dict:
    """How the scored split was made: the task's own file(s) for it, or carved by the seeded ratios
    (tunelab.data.build's own carve_plan and split_ratios), so that results.json can say which
    share of which data was scored."""
    task = data_task_config(spec)
    plain = task.get("source") is not None
    plan = carve_plan(plain, task.get("splits") or {})
    if plan is None or split not in plan[1]:
        return {"split": split, "rule": "given"}
    defaults = SplitConfig()
    config = data_split if data_split is not None else defaults
    origin = "data.split" + (" default" if split_ratios(config, None) == split_ratios(defaults, None) else "")
    origin += " and the task's ratios" if task.get("ratios") else ""
    ratios = split_ratios(config, task.get("ratios"))
    total = sum(ratios[t] for t in plan[1])
    return {"split": split, "rule": "ratios", "of": "source" if plain else "train", "ratios": ratios,
            "ratios_from": origin, "share": round(ratios[split] / total, 6) if total else 0.0, "seed": seed}


def count_text(entry: dict) -> str:
    """"50 of 180" when a limit cut the split, else "180"; entries without n_available (lm-eval
    tasks, results written before it existed) give just n."""
    n, available = entry["n"], entry.get("n_available")
    return f"{n} of {available}" if available is not None and n < available else str(n)


def scored_note(entry: dict) -> str:
    """One line: what was scored out of what, from which split, and the limit that cut it (with how
    to lift it), e.g. "scored 50 of 180 test examples (10% of the source by data.split default
    ratios [0.8, 0.1, 0.1], seed 42): forgetting.limit (default 50); set forgetting.limit: null to
    score all"."""
    split, rule, limit = entry["split"], entry.get("split_rule") or {}, entry.get("limit")
    cut = entry.get("n_available") is not None and entry["n"] < entry["n_available"]
    text = f"scored {count_text(entry)} {split} examples" if cut else f"scored all {entry['n']} {split} examples"
    if rule.get("rule") == "ratios":
        listed = ", ".join(f"{rule['ratios'][s]:g}" for s in SPLIT_NAMES)
        whole = "source" if rule["of"] == "source" else "task's train file"
        text += f" ({rule['share']:.0%} of the {whole} by {rule['ratios_from']} ratios [{listed}], seed {rule['seed']})"
    elif rule.get("rule") == "given":
        text += f" (the task's own {split} file)"
    if cut and limit:
        key, value = limit["from"], limit["value"]
        if key == "--limit":
            text += f": --limit {value}; leave out --limit to score all"
        elif key.endswith(".limit"):
            setting = f"{key} (default {value})" if limit.get("default") else f"{key}: {value}"
            text += f": {setting}; set {key}: null to score all"
        else:
            text += f": limit={value}; pass limit=None to score all"
    return text


def scored_fields(spec: dict, split: str, n: int, available: int, limit: int | None, limit_from: dict | None,
                  data_split, seed: int) -> dict:
    """results.json's record of what was scored out of what: n_available (the split's examples
    before the limit), limit ({value, from, default}, or None: none in force), split_rule, and
    `scored`, the line the commands print."""
    entry = {"split": split, "n": n, "n_available": available,
             "limit": {"value": limit, **(limit_from or {"from": "limit", "default": False})} if limit else None,
             "split_rule": split_rule(spec, split, data_split, seed)}
    entry["scored"] = scored_note(entry)
    return {k: entry[k] for k in ("n_available", "limit", "split_rule", "scored")}


def task_result(spec: dict, data, split: str, scored: dict, rows: list[dict], fields: dict,
                contamination: dict | None, versions: dict) -> dict:
    """One task's entry in results.json: the engine's result (`scored`) with what was scored out
    of what (`fields`, scored_fields), the data behind it and the contamination check."""
    return {"task": spec["name"], "kind": scored["eval_kind"], "data_kind": spec["kind"], "split": split,
            "n": len(rows), **fields, **scored, "labels": data.labels,
            "example_keys_sha256": keys_digest([r["key"] for r in rows]),
            "contamination": contamination or {"checked_against": [], "overlap": None,
                                               "note": "not a tuned run: training data unknown"},
            "config": spec, "data_counts": data.counts, "versions": versions,
            # whether the prompts went through a chat template, and which (lm-eval's apply_chat_template)
            "chat_template": data.chat_template}


def evaluate(model_ref: str | None, tasks: list, adapter: str | None = None, run: str | None = None,
             limit: int | None = None, output_dir: str | Path | None = None, *, split: str = "test",
             batch_size: int = 8, dtype: str = "float32", generation: GenerationConfig | None = None,
             cache: bool = True, n_resamples: int = 1000, confidence: float = 0.95, config_dir: str = ".",
             seed: int | None = None, counter: WorkCounter | None = None, spec: ModelSpec | None = None,
             data_tasks: dict | None = None, data_split=None, max_length: int = 4096,
             data_settings: dict | None = None, allow_train_overlap: bool = False, verbose: bool = True,
             model_options: dict | None = None, chat_template: str | None = None, lm_eval=None,
             world: World = ONE, limit_from: dict | None = None) -> dict:
    """Evaluate one model on tasks. Returns the results dict (also written to output_dir/results.json).
    limit_from: where `limit` came from, limit_origin(...) (default: the `limit` argument itself);
    chat_template: a data.chat_template choice for every task (a run's model: the run's own);
    lm_eval: {tasks, include, num_fewshot}, lm-evaluation-harness tasks scored after these (lmeval.py);
    world: the processes sharing this evaluation (shard.launched_world()); each must call this."""
    if not tasks and not lm_eval:
        raise UserError("no tasks given: name at least one (e.g. --task sst2=../shared/data/sst2)")
    if lm_eval and world.size > 1:  # lm-eval's own wrapper would score everything in every process
        raise UserError("lm-eval tasks (--lm-eval) run in one process: evaluate them without accelerate launch")
    counter = counter or WorkCounter()
    spec = spec or model_spec(model_ref, adapter, run, dtype, model_options)
    own = run_training_data(spec) if data_tasks is None else None
    if own is not None:  # a run's model: its own tasks, split ratios and split seed
        data_tasks, data_split, data_settings = own["data_tasks"], own["data_split"], own["data_settings"]
        seed = own["seed"] if seed is None else seed
        chat_template = own["chat_template"] if chat_template is None else chat_template
    seed = DEFAULT_SEED if seed is None else seed
    specs = expand_tasks(tasks, config_dir, data_tasks)
    bridge = None
    if lm_eval:  # lm-eval installed, its tasks known and loaded: all before any model loads
        from tunelab.evaluate.lmeval import prepare_section

        bridge = prepare_section(lm_eval, config_dir, {s["name"] for s in specs})
    lm = LazyModel(spec, counter)
    built = [load_examples(s, lm.tokenizer, split, limit, config_dir, seed, data_split, max_length,
                           data_settings if own_task(s, data_tasks) else None, chat_template) for s in specs]
    runs = training_runs(spec)
    keys = training_keys(runs)
    checks = {s["name"]: overlap_report(ex, keys, runs) for s, (_, _, ex) in zip(specs, built)} if runs else {}
    for s, (_, task_split, _) in zip(specs, built):
        if checks.get(s["name"], {}).get("overlap") and not allow_train_overlap:
            refuse_overlap(s["name"], task_split, checks[s["name"]])
    t0 = time.perf_counter()
    results = {"model": asdict(spec), "model_identity": model_identity(spec), "versions": versions(),
               "split": split, "limit": limit, "split_seed": seed,
               "generation": (generation or GenerationConfig()).model_dump(), "batch_size": batch_size,
               "bootstrap": {"n_resamples": n_resamples, "confidence": confidence, "seed": 0},
               "allow_train_overlap": allow_train_overlap, "tasks": {}}
    out = Path(output_dir) if output_dir is not None and world.main else None  # one writer: the main process
    cache_key = spec_fingerprint(spec) if cache else None
    for s, (data, task_split, examples) in zip(specs, built):
        result, rows = score_examples(lm, s, examples, split=task_split, labels=data.labels,
                                      label_synonyms=getattr(data, "label_synonyms", None), generation=generation,
                                      batch_size=batch_size, cache_key=cache_key, n_resamples=n_resamples,
                                      confidence=confidence, counter=counter, verbose=verbose,
                                      chat_template=getattr(data, "chat_template", None), world=world)
        name = s["name"]
        result = task_result(s, data, task_split, result, rows,
                             scored_fields(s, task_split, len(examples), len(data.splits[task_split]),
                                           limit, limit_from, data_split, seed),
                             checks.get(name), results["versions"])
        results["tasks"][name] = result
        if out is not None:
            write_jsonl(out / f"{name}.examples.jsonl", rows)
            result["examples_file"] = f"{name}.examples.jsonl"
        if world.main:
            log_task(result)
        results["work"] = work(counter, t0, world)
        if out is not None:
            write_json(out / "results.json", results)  # after every task: an interrupted run keeps the rest
    if bridge is not None:
        from tunelab.evaluate.lmeval import score_lm_eval_tasks

        score_lm_eval_tasks(bridge, lm, results, out, limit=limit, batch_size=batch_size, n_resamples=n_resamples,
                            confidence=confidence)
        results["work"] = work(counter, t0)
        if out is not None:
            write_json(out / "results.json", results)
    return results


def log_task(result: dict) -> None:
    summary = ", ".join(f"{m}={e['value']:.4g}" for m, e in result["metrics"].items() if e.get("ci"))
    overlap = result["contamination"].get("overlap")
    log(f"{result['task']}: n={count_text(result)} ({result['split']} split) {summary}"
        + (f"; {overlap} training examples of the model included (allowed)" if overlap else ""))


def work(counter: WorkCounter, t0: float, world: World = ONE) -> dict:
    """results.json's `work`: what the model did, summed over the processes, and the wall time so far."""
    return {**total_work(asdict(counter), world), "processes": world.size,
            "wall_s": round(time.perf_counter() - t0, 3)}


def read_examples(output_dir: str | Path, task: str) -> list[dict]:
    path = Path(output_dir) / f"{task}.examples.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
