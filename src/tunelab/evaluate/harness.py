"""`evaluate(...)`: score a model, adapter or run on tasks; write results JSON + per-example JSONL.

For each task: build its examples with the data pipeline (the same prompts training uses), take
the first `limit` of the split, look every item up in the cache, run the model only on the
missing ones, score, and write
    <output_dir>/results.json              every task: metrics {value, ci, n}, config, versions
    <output_dir>/<task>.examples.jsonl     one line per example: prompt, prediction, references, scores
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tunelab.config.base import UserError
from tunelab.config.evaluate import GenerationConfig
from tunelab.evaluate.cache import ResultCache, digest
from tunelab.evaluate.generation import WorkCounter, generate
from tunelab.evaluate.loading import LazyModel, ModelSpec, model_spec, spec_fingerprint
from tunelab.evaluate.loglikelihood import continuation_ids, score_requests, score_shared_context
from tunelab.evaluate.recipes import data_task_config, expand_task
from tunelab.evaluate.scoring import higher_is_better, primary_metric, score_choices, score_generations, score_perplexity


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("tunelab", "torch", "transformers", "peft", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _log(msg: str) -> None:
    print(f"[eval] {msg}", file=sys.stderr, flush=True)


def _progress(total: int, label: str):
    """Plain progress lines (one per batch): readable in CI logs and on a terminal."""
    state = {"done": 0, "t0": time.perf_counter()}

    def step(n: int) -> None:
        state["done"] += n
        elapsed = time.perf_counter() - state["t0"]
        _log(f"{label}: {state['done']}/{total} items ({elapsed:.1f}s)")

    return step


def load_examples(spec: dict, tokenizer, split: str, limit: int | None, config_dir: str, seed: int,
                  data_split=None, max_length: int = 4096):
    from tunelab.data import build_task

    task_cfg = data_task_config(spec)
    data = build_task(task_cfg, tokenizer, config_dir, max_length=max_length, seed=seed, split=data_split)
    split = spec.get("split", split)
    if split not in data.splits:
        raise UserError(f"task '{spec['name']}': no split '{split}' (have {', '.join(data.splits)})")
    examples = data.splits[split]
    if not examples:
        raise UserError(f"task '{spec['name']}': the {split} split is empty")
    return data, split, examples[:limit] if limit else examples


def _generate_task(lm: LazyModel, examples, settings: GenerationConfig, cache: ResultCache, batch_size: int,
                   counter: WorkCounter, name: str) -> list[dict]:
    keys = [digest(ex.prompt_ids) for ex in examples]
    missing = [i for i, k in enumerate(keys) if cache.get(k) is None]
    if missing:
        outs = generate(lm.model, lm.tokenizer, [examples[i].prompt_ids for i in missing], settings, batch_size,
                        keys=[keys[i] for i in missing], counter=counter,
                        progress=_progress(len(missing), f"{name} generate"))
        cache.put_many({keys[i]: asdict(o) for i, o in zip(missing, outs)})
    computed = set(missing)
    return [dict(cache.data[k], cached=i not in computed) for i, k in enumerate(keys)]


def _score_requests(lm: LazyModel, requests, cache: ResultCache, batch_size: int, counter: WorkCounter,
                    name: str) -> list[dict]:
    keys = [digest([ctx, cont]) for ctx, cont in requests]
    missing = sorted({k: i for i, k in enumerate(keys) if cache.get(k) is None}.values())
    if missing:
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        outs = score_requests(lm.model, [requests[i] for i in missing], batch_size, pad, counter,
                              progress=_progress(len(missing), f"{name} log-likelihood"))
        cache.put_many({keys[i]: o for i, o in zip(missing, outs)})
    return [cache.data[k] for k in keys]


def _score_groups(lm: LazyModel, groups, cache: ResultCache, batch_size: int, counter: WorkCounter,
                  name: str) -> list[list[dict]]:
    """Multiple choice: one cache entry per question (its context and all its options)."""
    keys = [digest([ctx, opts]) for ctx, opts in groups]
    missing = sorted({k: i for i, k in enumerate(keys) if cache.get(k) is None}.values())
    if missing:
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        outs = score_shared_context(lm.model, [groups[i] for i in missing], batch_size, pad, counter,
                                    progress=_progress(len(missing), f"{name} log-likelihood"))
        cache.put_many({keys[i]: {"options": o} for i, o in zip(missing, outs)})
    return [cache.data[k]["options"] for k in keys]


def evaluate_task(lm: LazyModel, task, *, split="test", limit=None, batch_size=8, generation=None,
                  use_cache=True, n_resamples=1000, confidence=0.95, config_dir=".", seed=42,
                  counter: WorkCounter | None = None, data_tasks: dict | None = None, data_split=None,
                  max_length: int = 4096) -> tuple[dict, list[dict]]:
    """One task -> (result dict, per-example rows). data_tasks/data_split: the training config's
    tasks (bare names refer to them) and split settings, so eval splits match training's."""
    counter = counter or WorkCounter()
    spec = expand_task(task, config_dir, data_tasks)
    name, kind, metrics = spec["name"], spec["eval_kind"], list(spec["metrics"])
    tokenizer = lm.tokenizer
    data, split, examples = load_examples(spec, tokenizer, split, limit, config_dir, seed, data_split, max_length)
    fp = spec_fingerprint(lm.spec)
    settings = None
    rows = [{"index": i, "key": f"{split}:{ex.source or ex.source_index}", "source": ex.source,
             "source_index": ex.source_index, "prompt": ex.prompt_text, "references": ex.references,
             "label": ex.label, "prompt_truncated": ex.truncated} for i, ex in enumerate(examples)]
    if kind == "generate":
        base = generation or GenerationConfig()
        # a task's own max_new_tokens/stop (recipes set them) apply unless the user set them explicitly
        settings = base.model_copy(update={k: spec[k] for k in ("max_new_tokens", "stop")
                                           if k in spec and k not in base.model_fields_set})
        cache = ResultCache({**fp, "kind": "generate", "settings": settings.model_dump()}, use_cache)
        outs = _generate_task(lm, examples, settings, cache, batch_size, counter, name)
        records = [{"prediction": o["text"], "references": ex.references, "label": ex.label}
                   for o, ex in zip(outs, examples)]
        corpus, per = score_generations(records, metrics, data.labels, n_resamples, confidence)
        for row, o, p in zip(rows, outs, per):
            row.update(prediction=o["text"], stop_reason=o["stop_reason"], generated_tokens=len(o["token_ids"]),
                       cached=o["cached"], scores=p)
    elif kind == "loglikelihood":
        if not all(ex.choices for ex in examples):
            raise UserError(f"task '{name}': log-likelihood scoring needs a multiple_choice task (choices)")
        cache = ResultCache({**fp, "kind": "loglikelihood"}, use_cache)
        groups = [(ex.prompt_ids, [continuation_ids(tokenizer, ex.prompt_text, c) for c in ex.choices])
                  for ex in examples]
        outs = _score_groups(lm, groups, cache, batch_size, counter, name)
        records = [{"logprobs": [o["logprob"] for o in group], "choices": ex.choices, "answer_index": ex.answer_index}
                   for group, ex in zip(outs, examples)]
        corpus, per = score_choices(records, metrics, n_resamples, confidence)
        for row, r, p, ex in zip(rows, records, per, examples):
            row.update(choices=ex.choices, answer_index=ex.answer_index, logprobs=r["logprobs"],
                       prediction=ex.choices[p["predicted_index"]], scores=p)
    elif kind == "perplexity":
        cache = ResultCache({**fp, "kind": "loglikelihood"}, use_cache)
        requests = [(ex.prompt_ids, ex.target_ids) for ex in examples]
        outs = _score_requests(lm, requests, cache, batch_size, counter, name)
        records = [{"logprob": o["logprob"], "n_tokens": o["n_tokens"],
                    "n_bytes": len(ex.target_text.encode("utf-8"))} for o, ex in zip(outs, examples)]
        corpus, per = score_perplexity(records, metrics, n_resamples, confidence)
        for row, ex, p in zip(rows, examples, per):
            row.update(prediction=None, target=ex.target_text, scores=p)
    else:
        raise UserError(f"task '{name}': unknown eval_kind '{kind}' (generate, loglikelihood, perplexity)")
    primary = primary_metric(metrics)
    for m, entry in corpus.items():
        entry.setdefault("higher_is_better", higher_is_better(m))
    result = {
        "task": name, "kind": kind, "data_kind": spec["kind"], "split": split, "n": len(examples),
        "primary_metric": primary, "metrics": corpus, "labels": data.labels,
        "config": {k: v for k, v in spec.items()},
        "generation": settings.model_dump() if settings is not None else None,
        "data_counts": data.counts,
        "cache": {"hits": cache.hits, "misses": cache.misses, "file": str(cache.path) if use_cache else None},
    }
    return result, rows


def evaluate(model_ref: str | None, tasks: list, adapter: str | None = None, run: str | None = None,
             limit: int | None = None, output_dir: str | Path | None = None, *, split: str = "test",
             batch_size: int = 8, dtype: str = "float32", generation: GenerationConfig | None = None,
             cache: bool = True, n_resamples: int = 1000, confidence: float = 0.95, config_dir: str = ".",
             seed: int = 42, counter: WorkCounter | None = None, spec: ModelSpec | None = None,
             data_tasks: dict | None = None, data_split=None, max_length: int = 4096) -> dict:
    """Evaluate one model on tasks. Returns the results dict (also written to output_dir/results.json)."""
    if not tasks:
        raise UserError("no tasks given: name at least one (e.g. --task sst2=../shared/data/sst2)")
    counter = counter or WorkCounter()
    spec = spec or model_spec(model_ref, adapter, run, dtype)
    lm = LazyModel(spec, counter)
    t0 = time.perf_counter()
    results = {"model": asdict(spec), "versions": versions(), "split": split, "limit": limit,
               "generation": (generation or GenerationConfig()).model_dump(), "batch_size": batch_size,
               "bootstrap": {"n_resamples": n_resamples, "confidence": confidence, "seed": 0}, "tasks": {}}
    out = Path(output_dir) if output_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        result, rows = evaluate_task(lm, task, split=split, limit=limit, batch_size=batch_size, generation=generation,
                                     use_cache=cache, n_resamples=n_resamples, confidence=confidence,
                                     config_dir=config_dir, seed=seed, counter=counter, data_tasks=data_tasks,
                                     data_split=data_split, max_length=max_length)
        name = result["task"]
        if name in results["tasks"]:
            raise UserError(f"two tasks are named '{name}': give one of them another name (name=...)")
        if out is not None:
            path = out / f"{name}.examples.jsonl"
            with path.open("w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            result["examples_file"] = path.name
        result["versions"] = results["versions"]
        results["tasks"][name] = result
        summary = ", ".join(f"{m}={e['value']:.4g}" for m, e in result["metrics"].items() if e.get("ci"))
        _log(f"{name}: n={result['n']} {summary}")
    results["work"] = {**asdict(counter), "wall_s": round(time.perf_counter() - t0, 3)}
    if out is not None:
        (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    return results


def read_examples(output_dir: str | Path, task: str) -> list[dict]:
    path = Path(output_dir) / f"{task}.examples.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
