"""Compare runs: metrics with CIs side by side, paired tests against the first run, and costs.

Each run's evaluation is read from <run>/eval/results.json (written by `tunelab eval --run RUN
--output RUN/eval`), or <run>/forgetting/tuned, or a folder holding results.json itself; with
`tasks` given, every run is evaluated first (cached, so re-running compare is cheap). Paired
tests use the same statistic as the number they test (scoring.paired_difference).

A folder that holds several systems stands for them: a demo folder (results.json with
"systems": its base evaluation and each training run) or an earlier comparison (compare.json).
With a tuned task (given, or the one task every tuned run trained on, counting what the run it
started from trained on: a second stage has trained on both) the table also holds the
trade-off: for each system after the first, its gain on the tuned task and its change on the
other tasks, each a paired difference against the first system with its CI and p.
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


def expand_folders(folders: list[str]) -> tuple[list[Path], list[str]]:
    """(paths, labels): a demo or comparison folder becomes the systems it holds; a run stays itself."""
    paths, labels = [], []
    for folder in map(Path, folders):
        demo = _read(folder / "results.json")
        earlier = _read(folder / "compare.json")
        if demo and isinstance(demo.get("systems"), dict):
            for name, system in demo["systems"].items():
                paths.append(Path(system["run"]) if system.get("run") else folder / name)
                labels.append(system.get("label") or name)
        elif earlier and earlier.get("paths"):
            paths += [Path(p) for p in earlier["paths"]]
            labels += earlier.get("labels") or earlier["runs"]
        else:
            paths.append(folder)
            labels.append(folder.name)
    return paths, labels


def _read(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def trained_tasks(run: Path) -> set[str] | None:
    """The tasks a run's model has trained on: its own (train_keys.json) and, when it started from
    another run's model (a second stage: that run's final/ or merged/ folder), that run's, and so on."""
    keys = _read(run / "train_keys.json")
    if keys is None:
        return None
    tasks, seen = set(keys["tasks"]), {run.resolve()}
    parent = started_from(run)
    while parent is not None and parent.resolve() not in seen:
        seen.add(parent.resolve())
        tasks |= set(_read(parent / "train_keys.json")["tasks"])
        parent = started_from(parent)
    return tasks


def started_from(run: Path) -> Path | None:
    """The run folder whose model this run started from (its model.name is that run's final/ or
    merged/ folder), else None."""
    import yaml

    cfg_file = run / "config.resolved.yaml"
    if not cfg_file.exists():
        return None
    name = ((yaml.safe_load(cfg_file.read_text(encoding="utf-8")) or {}).get("model") or {}).get("name")
    folder = Path(name) if isinstance(name, str) else None
    if folder is not None and folder.name in ("final", "merged") and (folder.parent / "train_keys.json").exists():
        return folder.parent
    return None


def guess_tuned_task(trained: list[set[str] | None], common: list[str]) -> str | None:
    """The one compared task every tuned run (after the first system) trained on, if there is one.
    trained: each system's trained_tasks."""
    sets = [s & set(common) for s in trained[1:] if s is not None]
    if not sets:
        return None
    shared = set.intersection(*sets)
    return shared.pop() if len(shared) == 1 else None


def trade_off(table: dict, tuned_task: str, trained: list[set[str] | None]) -> list[dict]:
    """Per system after the first: gain on the tuned task's primary metric, and the change on each
    other task's primary metric (paired differences against the first system); `held_out` says
    whether that system trained on the task (trained: each system's trained_tasks)."""
    primary = {r["task"]: r for r in table["rows"] if r["primary"]}
    points = []
    for i, name in enumerate(table["runs"][1:], start=1):
        gain = primary[tuned_task]["tests"][i] if tuned_task in primary else None
        own = trained[i] or set()
        others = [{"task": t, "metric": r["metric"], "held_out": t not in own, **better(r["tests"][i])}
                  for t, r in primary.items() if t != tuned_task and r["tests"][i]]
        points.append({"system": name, "label": table["labels"][i],
                       "gain": gain and {"metric": primary[tuned_task]["metric"], **better(gain)},
                       "others": others,
                       "change": sum(o["diff"] for o in others) / len(others) if others else None})
    return points


def better(test: dict) -> dict:
    """A paired test as an improvement: diff and CI with the sign flipped for lower-is-better metrics."""
    sign = 1.0 if test.get("higher_is_better", True) else -1.0
    lo, hi = sorted(sign * x for x in test["ci"])
    return {"diff": sign * test["diff"], "ci": [lo, hi], "p_value": test["p_value"], "n": test.get("n")}


def compare_runs(runs: list[str], tasks: list | None = None, output_dir: str | None = None,
                 n_resamples: int = 1000, tuned_task: str | None = None, **eval_kwargs) -> dict:
    paths, labels = expand_folders(runs)
    if tasks or eval_kwargs.get("lm_eval"):
        from tunelab.evaluate.harness import evaluate

        for p in paths:
            is_run = (p / "final").exists()
            evaluate(None if is_run else str(p), tasks, run=str(p) if is_run else None, output_dir=p / "eval",
                     n_resamples=n_resamples, **eval_kwargs)
    dirs = [results_dir(p) for p in paths]
    results = [json.loads((d / "results.json").read_text(encoding="utf-8")) for d in dirs]
    names = unique_names(paths)
    rows = []
    common = [t for t in results[0]["tasks"] if all(t in r["tasks"] for r in results)]
    # every system's per-example rows, read once: key -> row, per task, in system order
    examples = {task: [{e["key"]: e for e in read_examples(d, task)} for d in dirs] for task in common}
    for task in common:
        first = results[0]["tasks"][task]
        base_rows, others = examples[task][0], examples[task][1:]
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
    table = {"runs": names, "labels": labels, "paths": [str(p) for p in paths], "rows": rows,
             "costs": [run_cost(p) for p in paths]}
    trained = [trained_tasks(p) for p in paths]
    tuned_task = tuned_task or guess_tuned_task(trained, common)
    if tuned_task is not None and tuned_task not in common:
        raise UserError(f"--tuned-task {tuned_task}: not among the tasks every run was scored on ({', '.join(common)})")
    if tuned_task is not None and len(paths) > 1:
        table["tuned_task"] = tuned_task
        table["trade_off"] = trade_off(table, tuned_task, trained)
    continued = continued_stages(paths, results, examples, table, n_resamples)
    if continued:
        table["continued"] = continued
    if output_dir:
        out = Path(output_dir)
        write_json(out / "compare.json", table)
        write_text(out / "compare.md", compare_markdown(table))
    return table


def continued_stages(paths: list[Path], results: list[dict], examples: dict, table: dict,
                     n_resamples: int) -> list[dict]:
    """For each system that started from another compared system's model (a second stage): every
    task's primary metric, paired against that system on the same examples (higher = better).
    examples: task -> each system's per-example rows by key (compare_runs reads them once)."""
    index = {p.resolve(): j for j, p in enumerate(paths)}
    found = []
    for i, path in enumerate(paths):
        parent = started_from(path)
        j = index.get(parent.resolve()) if parent is not None else None
        if j is None:
            continue
        tests = []
        for task, rows in examples.items():
            info = results[j]["tasks"][task]
            mine, theirs = rows[i], rows[j]
            keys = [k for k in theirs if k in mine]
            if keys and info["metrics"].get(info["primary_metric"], {}).get("ci"):
                test = paired_difference(info["primary_metric"], [mine[k] for k in keys], [theirs[k] for k in keys],
                                         info.get("labels"), n_resamples)
                tests.append({"task": task, "metric": info["primary_metric"], **better(test)})
        found.append({"system": table["runs"][i], "label": table["labels"][i], "after": table["runs"][j],
                      "after_label": table["labels"][j], "tests": tests})
    return found


def unique_names(paths: list[Path]) -> list[str]:
    """Folder names, with the parent's name added where two are alike (run-a/final, run-b/final)."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


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
    if table.get("trade_off"):
        lines += ["", f"## Gain on {table['tuned_task']} vs change on the other tasks", "",
                  f"Each against {names[0]} on the same examples, higher = better (paired bootstrap: diff, 95% CI, p).",
                  "", "| system | gain | change on the other tasks (average) | per task |", "|---|---|---|---|"]
        for point in table["trade_off"]:
            g = point["gain"]
            per_task = "; ".join(f"{o['task']}{'' if o['held_out'] else ' (trained on)'} {_diff(o)}"
                                 for o in point["others"])
            change = "n/a" if point["change"] is None else f"{point['change']:+.4f}"
            lines.append(f"| {point['label']} | {_diff(g) if g else 'n/a'} | {change} | {per_task} |")
    if table.get("continued"):
        lines += ["", "## Second stages: each against the model it continued from", "",
                  "Paired on the same examples, higher = better (paired bootstrap: diff, 95% CI, p).", "",
                  "| system | continued from | change per task |", "|---|---|---|"]
        for c in table["continued"]:
            per_task = "; ".join(f"{t['task']} ({t['metric']}) {_diff(t)}" for t in c["tests"])
            lines.append(f"| {c['label']} | {c['after_label']} | {per_task} |")
    lines += ["", "## Cost", "", "| run | " + " | ".join(COST_FIELDS) + " |", "|" + "---|" * (len(COST_FIELDS) + 1)]
    for name, cost in zip(names, table["costs"]):
        lines.append(f"| {name} | " + " | ".join("n/a" if cost.get(k) is None else str(cost.get(k)) for k in COST_FIELDS) + " |")
    return "\n".join(lines) + "\n"


def _diff(d: dict) -> str:
    return f"{d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}] ({p_clause(d['p_value'])})"
