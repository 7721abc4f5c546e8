"""Compare runs: metrics with CIs side by side, paired tests against the first run, and costs.

Each run's evaluation is read from <run>/eval/results.json (written by `tunelab eval --run RUN
--output RUN/eval`), or <run>/forgetting/tuned, or a folder holding results.json itself; with
`tasks` given, every run is evaluated first (cached, so re-running compare is cheap). Paired
tests use the same statistic as the number they test (scoring.paired_difference).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.base import UserError
from tunelab.evaluate.harness import read_examples
from tunelab.evaluate.scoring import paired_difference
from tunelab.files import write_json, write_text
from tunelab.metrics.stats import p_clause

COST_FIELDS = ("wall_s", "train_tokens", "trainable_params", "total_params", "peak_rss_mb", "steps", "method")


def results_dir(run: Path) -> Path:
    for folder in (run / "eval", run / "forgetting" / "tuned", run):
        if (folder / "results.json").exists():
            return folder
    raise UserError(f"{run}: no evaluation results (looked for eval/results.json, forgetting/tuned/results.json, "
                    f"results.json); run `tunelab eval --run {run} --task ... --output {run}/eval` or pass --task")


def run_cost(run: Path) -> dict:
    summary = run / "summary.json"
    if not summary.exists():
        return {}
    data = json.loads(summary.read_text(encoding="utf-8"))
    return {k: data.get(k) for k in COST_FIELDS}


def compare_runs(runs: list[str], tasks: list | None = None, output_dir: str | None = None,
                 n_resamples: int = 1000, **eval_kwargs) -> dict:
    paths = [Path(r) for r in runs]
    if tasks or eval_kwargs.get("lm_eval"):
        from tunelab.evaluate.harness import evaluate

        for p in paths:
            is_run = (p / "final").exists()
            evaluate(None if is_run else str(p), tasks, run=str(p) if is_run else None, output_dir=p / "eval",
                     n_resamples=n_resamples, **eval_kwargs)
    dirs = [results_dir(p) for p in paths]
    results = [json.loads((d / "results.json").read_text(encoding="utf-8")) for d in dirs]
    names = [p.name for p in paths]
    rows = []
    common = [t for t in results[0]["tasks"] if all(t in r["tasks"] for r in results)]
    for task in common:
        first = results[0]["tasks"][task]
        base_rows = {e["key"]: e for e in read_examples(dirs[0], task)}
        others = [{e["key"]: e for e in read_examples(d, task)} for d in dirs[1:]]
        for metric in first["metrics"]:
            if not first["metrics"][metric].get("ci"):
                continue
            row = {"task": task, "metric": metric, "primary": metric == first["primary_metric"],
                   "values": [r["tasks"][task]["metrics"].get(metric) for r in results], "tests": [None]}
            for other in others:
                keys = [k for k in base_rows if k in other]
                test = None
                if keys:
                    test = paired_difference(metric, [other[k] for k in keys], [base_rows[k] for k in keys],
                                             first.get("labels"), n_resamples)
                    test["against"] = names[0]
                row["tests"].append(test)
            rows.append(row)
    table = {"runs": names, "paths": [str(p) for p in paths], "rows": rows,
             "costs": [run_cost(p) for p in paths]}
    if output_dir:
        out = Path(output_dir)
        write_json(out / "compare.json", table)
        write_text(out / "compare.md", compare_markdown(table))
    return table


def compare_markdown(table: dict) -> str:
    names = table["runs"]
    head = "| task | metric | " + " | ".join(names) + " |"
    lines = ["# Comparison", "", f"Paired tests: each run minus {names[0]} on the same examples "
             "(paired bootstrap: diff, 95% CI, p).", "", head, "|" + "---|" * (len(names) + 2)]
    for row in table["rows"]:
        cells = []
        for i, v in enumerate(row["values"]):
            cell = "n/a" if v is None else f"{v['value']:.4f} [{v['ci'][0]:.4f}, {v['ci'][1]:.4f}]"
            t = row["tests"][i] if i < len(row["tests"]) else None
            if t:
                cell += f"<br>Δ {t['diff']:+.4f} [{t['ci'][0]:+.4f}, {t['ci'][1]:+.4f}] {p_clause(t['p_value'])}"
            cells.append(cell)
        lines.append(f"| {row['task']} | {row['metric']}{' *' if row['primary'] else ''} | " + " | ".join(cells) + " |")
    lines += ["", "## Cost", "", "| run | " + " | ".join(COST_FIELDS) + " |", "|" + "---|" * (len(COST_FIELDS) + 1)]
    for name, cost in zip(names, table["costs"]):
        lines.append(f"| {name} | " + " | ".join("n/a" if cost.get(k) is None else str(cost.get(k)) for k in COST_FIELDS) + " |")
    return "\n".join(lines) + "\n"
