"""Forgetting: the base model vs the tuned run on the same examples, with paired tests.

Per task: base score, tuned score, difference (tuned - base) with a paired-bootstrap CI and
p-value over the same examples (McNemar too for 0/1 scores). Summary: the tuned task's gain and
the average drop over held-out tasks (see docs/evaluation.md for the exact definitions).
Results go to <output>/forgetting.json and forgetting.md; the two evaluations under base/ and tuned/.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunelab.evaluate.harness import evaluate, read_examples
from tunelab.evaluate.loading import model_spec, run_base_model
from tunelab.evaluate.scoring import higher_is_better, per_record_key


def paired_task_diff(base_dir: Path, tuned_dir: Path, base_task: dict, tuned_task: dict,
                     n_resamples: int = 1000) -> dict:
    """Difference on one task's primary metric, paired over examples present in both evaluations."""
    from tunelab.metrics import mcnemar, paired_bootstrap

    name, metric = base_task["task"], base_task["primary_metric"]
    key = per_record_key(metric)
    base_rows = {r["key"]: r for r in read_examples(base_dir, name)}
    tuned_rows = {r["key"]: r for r in read_examples(tuned_dir, name)}
    keys = [k for k in base_rows if k in tuned_rows]
    a = np.asarray([tuned_rows[k]["scores"][key] for k in keys], dtype=float)
    b = np.asarray([base_rows[k]["scores"][key] for k in keys], dtype=float)
    test = paired_bootstrap(a, b, n_resamples=n_resamples)
    out = {
        "task": name, "metric": metric, "n": len(keys), "higher_is_better": higher_is_better(metric),
        "base": base_task["metrics"][metric], "tuned": tuned_task["metrics"][metric],
        "diff": float(tuned_task["metrics"][metric]["value"] - base_task["metrics"][metric]["value"]),
        "paired_on": key, "paired_diff": test["diff"], "ci": test["ci"], "p_value": test["p_value"],
        "test": test["test"],
    }
    if key == "perplexity" or key == "token_nll":
        out["note"] = "paired test on per-example mean token NLL (tuned - base); lower is better"
    if set(np.unique(np.concatenate([a, b]))) <= {0.0, 1.0}:
        out["mcnemar"] = mcnemar(a.astype(bool), b.astype(bool))
    # improvement in the metric's own direction: > 0 means tuned is better
    sign = 1.0 if out["higher_is_better"] else -1.0
    out["improvement"] = sign * out["diff"]
    return out


def summarize(rows: list[dict], tuned_task: str | None) -> dict:
    """Gain on the tuned task; mean drop (base - tuned, in metric units) over held-out tasks."""
    held = [r for r in rows if r["task"] != tuned_task]
    gain = next((r for r in rows if r["task"] == tuned_task), None)
    # Only bounded 0..1 scores (accuracy, ROUGE F, exact match) are averaged; perplexity is listed apart.
    bounded = [r for r in held if r["higher_is_better"]]
    drops = [-r["improvement"] for r in bounded]
    return {
        "tuned_task": tuned_task,
        "gain": None if gain is None else {"metric": gain["metric"], "diff": gain["diff"], "ci": gain["ci"],
                                           "p_value": gain["p_value"]},
        "held_out_tasks": [r["task"] for r in held],
        "average_drop": float(np.mean(drops)) if drops else None,
        "average_drop_tasks": [r["task"] for r in bounded],
        "significant_drops": [r["task"] for r in held if r["improvement"] < 0 and r["p_value"] < 0.05],
    }


def forgetting(base: str | None, tuned_run: str, tasks: list, *, tuned_task: str | None = None,
               limit: int | None = None, output_dir: str | Path | None = None, adapter: str | None = None,
               n_resamples: int = 1000, base_results_dir: str | Path | None = None, **eval_kwargs) -> dict:
    """Evaluate base and tuned on `tasks` (or reuse base_results_dir) and write the forgetting report."""
    run = Path(tuned_run)
    out = Path(output_dir) if output_dir is not None else run / "forgetting"
    base = base or run_base_model(run)
    tuned_spec = model_spec(base, adapter=adapter, run=None if adapter else str(run), dtype=eval_kwargs.get("dtype", "float32"))
    base_dir, tuned_dir = Path(base_results_dir) if base_results_dir else out / "base", out / "tuned"
    if base_results_dir is None:
        base_res = evaluate(base, tasks, limit=limit, output_dir=base_dir, n_resamples=n_resamples, **eval_kwargs)
    else:
        base_res = json.loads((base_dir / "results.json").read_text(encoding="utf-8"))
    tuned_res = evaluate(None, tasks, limit=limit, output_dir=tuned_dir, n_resamples=n_resamples, spec=tuned_spec,
                         **{k: v for k, v in eval_kwargs.items() if k != "dtype"})
    return write_forgetting(base_res, tuned_res, base_dir, tuned_dir, out, tuned_task or guess_tuned_task(run),
                            n_resamples, base_label=base, tuned_label=str(run))


def write_forgetting(base_res: dict, tuned_res: dict, base_dir: Path, tuned_dir: Path, out: Path,
                     tuned_task: str | None, n_resamples: int = 1000, base_label: str = "base",
                     tuned_label: str = "tuned") -> dict:
    rows = [paired_task_diff(base_dir, tuned_dir, base_res["tasks"][name], tuned_res["tasks"][name], n_resamples)
            for name in base_res["tasks"] if name in tuned_res["tasks"]]
    report = {"base": base_label, "tuned": tuned_label, "base_dir": str(base_dir), "tuned_dir": str(tuned_dir),
              "tasks": rows, "summary": summarize(rows, tuned_task)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "forgetting.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (out / "forgetting.md").write_text(forgetting_markdown(report), encoding="utf-8")
    return report


def guess_tuned_task(run: Path) -> str | None:
    """The run's training task, when it trained on exactly one (names from config.resolved.yaml)."""
    import yaml

    cfg_file = run / "config.resolved.yaml"
    if not cfg_file.exists():
        return None
    data = yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}
    retention = data.get("retention") or {}
    if retention.get("tuned_task"):
        return retention["tuned_task"]
    names = [t.get("name") for t in (data.get("data") or {}).get("tasks") or [] if isinstance(t, dict)]
    return names[0] if len(names) == 1 else None


def _fmt(x, digits=4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def forgetting_markdown(report: dict) -> str:
    s = report["summary"]
    lines = [f"# Forgetting: {report['tuned']} vs {report['base']}", "",
             "| task | metric | n | base | tuned | diff (tuned - base) | 95% CI | p |", "|---|---|---|---|---|---|---|---|"]
    for r in report["tasks"]:
        mark = " (tuned task)" if r["task"] == s["tuned_task"] else ""
        lines.append(f"| {r['task']}{mark} | {r['metric']} | {r['n']} | {_fmt(r['base']['value'])} | "
                     f"{_fmt(r['tuned']['value'])} | {r['diff']:+.4f} | [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}] | "
                     f"{r['p_value']:.3g} |")
    lines.append("")
    if s["gain"]:
        g = s["gain"]
        lines.append(f"Gain on the tuned task ({s['tuned_task']}, {g['metric']}): {g['diff']:+.4f} "
                     f"(95% CI [{_fmt(g['ci'][0])}, {_fmt(g['ci'][1])}], p = {g['p_value']:.3g}).")
    if s["average_drop"] is not None:
        lines.append(f"Average drop over held-out tasks ({', '.join(s['average_drop_tasks'])}): "
                     f"{s['average_drop']:+.4f} (positive = worse after tuning).")
    if s["significant_drops"]:
        lines.append(f"Significant drops (p < 0.05): {', '.join(s['significant_drops'])}.")
    return "\n".join(lines) + "\n"


def training_data(cfg) -> dict:
    """The training config's data tasks (by name) and split settings, for eval splits that match."""
    data = getattr(cfg, "data", None)
    tasks = {t.name: t.model_dump(exclude_none=True) for t in getattr(data, "tasks", []) or [] if hasattr(t, "name")}
    # max_length stays the eval default (4096): eval prompts are not cut to the training length
    return {"data_tasks": tasks, "data_split": getattr(data, "split", None)}


def _split_seed(cfg) -> int:
    """The seed the data pipeline split the training data with: eval splits must match it."""
    split = getattr(getattr(cfg, "data", None), "split", None)
    seed = getattr(split, "seed", None)
    return seed if seed is not None else cfg.seed


def run_retention(cfg, run_dir: str | Path, stage: str = "before") -> dict | None:
    """Called by the training loop: score cfg.retention tasks on the base model ("before", at the
    start) or on the run's final/ ("after", at the end); after "after", write the forgetting report.

    Results: <run>/retention/before/, <run>/retention/after/, <run>/retention/forgetting.json.
    """
    from tunelab.config.evaluate import RetentionConfig

    retention = getattr(cfg, "retention", None)
    if retention is None or not retention.tasks:
        return None
    if isinstance(retention, dict):
        retention = RetentionConfig.model_validate(retention)
    if stage not in ("before", "after"):
        raise ValueError("stage must be 'before' or 'after'")
    if not getattr(retention, stage):
        return None
    run = Path(run_dir)
    folder = run / "retention"
    kwargs = dict(limit=retention.limit, split=retention.split, batch_size=retention.batch_size,
                  generation=retention.generation, cache=retention.cache, n_resamples=retention.bootstrap_resamples,
                  config_dir=getattr(cfg, "config_dir", "."), seed=_split_seed(cfg), **training_data(cfg))
    if stage == "before":
        return evaluate(cfg.model.name, retention.tasks, output_dir=folder / "before", dtype=retention.dtype, **kwargs)
    tuned = evaluate(None, retention.tasks, output_dir=folder / "after",
                     spec=model_spec(cfg.model.name, run=str(run), dtype=retention.dtype), **kwargs)
    before_file = folder / "before" / "results.json"
    if not before_file.exists():  # retention.before was off: score the base model now
        evaluate(cfg.model.name, retention.tasks, output_dir=folder / "before", dtype=retention.dtype, **kwargs)
    base = json.loads(before_file.read_text(encoding="utf-8"))
    return write_forgetting(base, tuned, folder / "before", folder / "after", folder,
                            retention.tuned_task or guess_tuned_task(run), retention.bootstrap_resamples,
                            base_label=cfg.model.name, tuned_label=str(run))
