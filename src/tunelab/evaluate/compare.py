"""Compare systems: metrics with CIs side by side, paired tests against the first, and costs.

Each run's evaluation is read from <run>/eval/results.json (written by `tunelab eval --run RUN
--output RUN/eval`), or <run>/forgetting/tuned, or a folder holding results.json itself; with
`tasks` given, every run is evaluated first (cached, so re-running compare is cheap). Every
paired test comes from the comparison engine (evaluate/comparison.py).

A system is one run, or several runs of the same config with different training seeds: a list
of run folders, or a seeds folder (seeds.json, written by `tunelab train` with `seeds:`). A
folder that holds several systems stands for them: a demo folder (results.json with "systems":
its base evaluation and each training run) or an earlier comparison (compare.json).
With tuned tasks (given, else the one task every tuned run trained on, counting what the run it
started from trained on: a second stage has trained on both; else each run's own one task, so an
SFT and a DPO run each keep theirs) the table also holds the trade-off: for each system after the
first, its gain on its tuned task and its change on the other tasks, each a paired difference
against the first system with its CI and p.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.base import UserError
from tunelab.evaluate.comparison import (change_of, compare_metric, held_out_change, mde_text, paired_keys, sign,
                                         system_value, tuned_tasks)
from tunelab.evaluate.engine import log
from tunelab.evaluate.harness import read_examples
from tunelab.files import write_json, write_text
from tunelab.metrics.stats import p_clause
from tunelab.runfolder import RunFolder, read_json

# wall_s: every start of the run, scoring included; train_s: its training steps only (summary.json phase_s)
COST_FIELDS = ("wall_s", "train_s", "train_tokens", "trainable_params", "total_params", "peak_rss_mb", "steps",
               "method")


def results_dir(run: Path) -> Path:
    found = RunFolder.of(run).results_dir()
    if found is not None:
        return found
    raise UserError(f"{run}: no evaluation results (looked for eval/results.json, forgetting/tuned/results.json, "
                    f"results.json); run `tunelab eval --run {run} --task ... --output {run}/eval` or pass --task")


def run_cost(run: Path) -> dict:
    data = RunFolder.of(run).summary()
    if not data:
        return {}
    data["train_s"] = (data.get("phase_s") or {}).get("training")
    return {k: data.get(k) for k in COST_FIELDS}


def expand_folders(folders: list) -> tuple[list[list[Path]], list[str]]:
    """(systems, labels): each system is its runs (one per training seed). A demo or comparison
    folder becomes the systems it holds, a seeds folder one system, a list of folders one system."""
    systems, labels = [], []
    for folder in folders:
        if isinstance(folder, (list, tuple)):
            systems.append([Path(p) for p in folder])
            labels.append(Path(folder[0]).parent.name)
            continue
        folder = Path(folder)
        demo, earlier, seeds = (read_json(folder / name) for name in ("results.json", "compare.json", "seeds.json"))
        if demo and isinstance(demo.get("systems"), dict):
            for name, system in demo["systems"].items():
                runs = system.get("seed_runs") or ([system["run"]] if system.get("run") else [folder / name])
                systems.append([Path(r) for r in runs])
                labels.append(system.get("label") or name)
        elif seeds:
            systems.append([folder / r for r in seeds["runs"]])
            labels.append(folder.name)
        elif earlier and earlier.get("paths"):
            systems += [[Path(r) for r in runs] for runs in earlier.get("seed_paths") or [[p] for p in earlier["paths"]]]
            labels += earlier.get("labels") or earlier["runs"]
        else:
            systems.append([folder])
            labels.append(folder.name)
    return systems, labels


def source_run(folder: Path) -> Path:
    """The run behind a compared folder (RunFolder.behind); the folder itself when there is none."""
    run = RunFolder.behind(folder)
    return run.path if run is not None else folder


def trained_tasks(run: Path) -> set[str] | None:
    """The tasks a run's model has trained on, counting the runs it started from (a second stage);
    an evaluation folder answers for the run it scored."""
    found = RunFolder.behind(run)
    return found.trained_tasks() if found is not None else None


def trade_off(table: dict, tuned: list[str | None], trained: list[set[str] | None]) -> list[dict]:
    """Per system after the first: gain on its tuned task's primary metric (tuned[i]: systems tuned
    on different tasks each have their own), and the change on each other task's primary metric
    (paired tests against the first system, as improvements); `held_out` says whether that system
    did not train on the task. `change` (comparison.change_of) is over the tasks that are no
    system's tuned task, the same tasks for every point, so that all points share the x axis;
    `held_out_change` is the held-out summary over the tasks this system did not train on."""
    primary = {r["task"]: r for r in table["rows"] if r["primary"]}
    excluded = {t for t in tuned if t}
    points = []
    for i, name in enumerate(table["runs"][1:], start=1):
        mine = tuned[i]
        gain = primary[mine]["tests"][i] if mine in primary else None
        own = trained[i] or set()
        tests = [{"task": t, **r["tests"][i]} for t, r in primary.items() if t != mine and r["tests"][i]]
        others = [{"task": t["task"], "metric": t["metric"], "held_out": t["task"] not in own, **improvement(t)}
                  for t in tests]
        point = {"system": name, "label": table["labels"][i], "tuned_task": mine,
                 "gain": gain and {"metric": primary[mine]["metric"], **improvement(gain)}, "others": others,
                 **change_of(tests, excluded),
                 "held_out_change": held_out_change(tests, mine, own)["held_out_change"]}
        if gain and gain.get("per_seed_diffs") is not None:
            point["per_seed"] = seed_points(gain, tests, excluded)
        points.append(point)
    return points


def seed_points(gain: dict, tests: list[dict], excluded: set[str]) -> list[dict]:
    """Each training seed's own (gain, change) point, for the plot (per_seed_diffs, as improvements)."""
    out = []
    for s, g in enumerate(gain["per_seed_diffs"]):
        per_task = [{**t, "improvement": sign(t) * t["per_seed_diffs"][s]} for t in tests
                    if t.get("per_seed_diffs") is not None and len(t["per_seed_diffs"]) > s]
        out.append({"seed": s, "gain": sign(gain) * g, "change": change_of(per_task, excluded)["change"]})
    return out


def given_tuned(given: str | dict | None, names: list[str], labels: list[str]) -> dict[int, str]:
    """--tuned-task as system index -> task: one task for every tuned system, or a mapping from a
    system's name or label to its task (the others keep the automatic rule)."""
    if not given:
        return {}
    if isinstance(given, str):
        return {i: given for i in range(1, len(names))}
    out = {}
    for key, task in given.items():
        found = [i for i, (n, lab) in enumerate(zip(names, labels)) if key in (n, lab)]
        if not found:
            raise UserError(f"--tuned-task {key}={task}: no compared system is called {key!r} "
                            f"(systems: {', '.join(labels)})")
        if found[0] == 0:
            raise UserError(f"--tuned-task {key}={task}: {key} is the reference (the first system), "
                            "every other system is paired against it; it has no tuned task")
        out[found[0]] = task
    return out


def improvement(test: dict) -> dict:
    """A paired test as an improvement (higher = better): the engine's improvement and its CI."""
    keep = ("p_value", "n", "test", "mde", "holds_in_every_seed", "seed_sd", "scale")
    return {"diff": test["improvement"], "ci": list(test["improvement_ci"]), **{k: test[k] for k in keep if k in test}}


def compare_runs(runs: list, tasks: list | None = None, output_dir: str | None = None,
                 n_resamples: int = 1000, tuned_task: str | dict | None = None, system_names: list[str] | None = None,
                 **eval_kwargs) -> dict:
    """runs: run/eval/demo/compare/seeds folders, or lists of one system's seed runs.
    tuned_task: one task for every tuned system, or {system name or label: task}; the others by
    comparison.tuned_tasks.
    system_names: the systems' names (default: from their folders), one per system; compare.json
    keeps them as "labels" (a task's class labels are the results' "labels", a different thing)."""
    systems, found = expand_folders(runs)
    named = system_names is not None
    if named and (len(system_names) != len(systems) or len(set(system_names)) != len(system_names)):
        raise ValueError(f"compare_runs: {len(systems)} systems need as many distinct names, got {system_names}")
    labels = list(system_names) if named else found
    if tasks or eval_kwargs.get("lm_eval"):
        from tunelab.evaluate.harness import evaluate

        for p in (p for runs_ in systems for p in runs_):
            is_run = (p / "final").exists()
            evaluate(None if is_run else str(p), tasks, run=str(p) if is_run else None, output_dir=p / "eval",
                     n_resamples=n_resamples, **eval_kwargs)
    dirs = [[results_dir(p) for p in runs_] for runs_ in systems]
    results = [[json.loads((d / "results.json").read_text(encoding="utf-8")) for d in ds] for ds in dirs]
    paths = [runs_[0].parent if len(runs_) > 1 else runs_[0] for runs_ in systems]
    names = labels if named else unique_names(paths)
    common = [t for t in results[0][0]["tasks"] if all(t in r["tasks"] for rs in results for r in rs)]
    # every run's per-example rows, read once: task -> system -> seed -> {key: row}
    examples = {task: [[{e["key"]: e for e in read_examples(d, task)} for d in ds] for ds in dirs] for task in common}
    seeds = [[seed_of(p) for p in runs_] for runs_ in systems]
    partial = unpaired(examples, names)
    rows = []
    for task in common:
        first = results[0][0]["tasks"][task]
        for metric in first["metrics"]:
            if not first["metrics"][metric].get("ci"):
                continue
            higher = first["metrics"][metric].get("higher_is_better")
            values = [system_value([r["tasks"][task]["metrics"][metric] for r in rs])
                      if all(metric in r["tasks"][task]["metrics"] for r in rs) else None for rs in results]
            tests = [None] + [compare_metric(metric, examples[task][i], examples[task][0], first.get("labels"),
                                             n_resamples, higher=higher, seeds=(seeds[i], seeds[0]))
                              for i in range(1, len(systems))]
            for t in tests[1:]:
                if t is not None:
                    t["against"] = names[0]
            rows.append({"task": task, "metric": metric, "primary": metric == first["primary_metric"],
                         "values": values, "tests": tests})
    table = {"runs": names, "labels": labels, "paths": [str(p) for p in paths], "rows": rows,
             "costs": [system_cost(runs_) for runs_ in systems]}
    if partial:
        table["unpaired"] = partial
    if any(len(runs_) > 1 for runs_ in systems):
        table["seed_paths"] = [[str(p) for p in runs_] for runs_ in systems]
        table["seeds"] = seeds
    trained = [trained_tasks(runs_[0]) for runs_ in systems]
    tuned = tuned_tasks(trained, common, given_tuned(tuned_task, names, labels))
    for task in tuned:
        if task is not None and task not in common:
            raise UserError(f"--tuned-task {task}: not among the tasks every run was scored on ({', '.join(common)})")
    if any(tuned[1:]):
        if len(set(tuned[1:])) == 1:  # one tuned task for every system: the table's
            table["tuned_task"] = tuned[1]
        table["trade_off"] = trade_off(table, tuned, trained)
        mark_interpolation(table, systems, results)
    continued = continued_stages(systems, results, examples, table, n_resamples)
    if continued:
        table["continued"] = continued
    if output_dir:
        out = Path(output_dir)
        write_json(out / "compare.json", table)
        write_text(out / "compare.md", compare_markdown(table))
    return table


def unpaired(examples: dict, names: list[str]) -> list[dict]:
    """Tasks on which some run scored examples another did not: every test pairs only the examples
    all runs scored (comparison.paired_keys), so the reader is told how many, per task, with each
    system's count (one per training seed), here and on stderr. examples: task -> system -> seed
    -> {key: row}."""
    found = []
    for task, by_system in examples.items():
        paired = len(paired_keys(*(r for seeds in by_system for r in seeds)))
        scored = {name: [len(r) for r in seeds] for name, seeds in zip(names, by_system)}
        if any(n != paired for counts in scored.values() for n in counts):
            found.append({"task": task, "paired": paired, "scored": scored})
            counts = scored_counts(scored)
            log(f"compare: {task}: the tests pair the {paired} examples every run scored; the runs scored "
                f"{counts} (a different limit, split, max_length or data file?)")
    return found


def scored_counts(scored: dict[str, list[int]]) -> str:
    """An `unpaired` entry's counts as text: "base 30, lora 20/20/19" (one per training seed)."""
    return ", ".join(f"{name} {'/'.join(map(str, counts))}" for name, counts in scored.items())


def mark_interpolation(table: dict, systems: list[list[Path]], results: list) -> None:
    """A system scored at interpolated weights (its results.json's model.alpha: evaluate/interpolation.py)
    carries its alpha on its trade-off point, and the name of the system it interpolates when that
    one (the same run, as trained) is compared too: the report joins them into one curve."""
    alphas = [(rs[0].get("model") or {}).get("alpha") for rs in results]
    runs = [source_run(runs_[0]).resolve() for runs_ in systems]
    for point in table["trade_off"]:
        i = table["runs"].index(point["system"])
        if alphas[i] is None:
            continue
        point["alpha"] = alphas[i]
        whole = [j for j in range(1, len(systems)) if alphas[j] is None and runs[j] == runs[i]]
        if whole:
            point["interpolation_of"] = table["runs"][whole[0]]


def seed_of(run: Path) -> int | None:
    """The training seed a run used (its config), None for a folder that is not a run."""
    found = RunFolder.behind(run)
    return found.seed if found is not None and found.has_config() else None


def system_cost(runs: list[Path]) -> dict:
    """One run's cost; for several seeds the mean per run, and how many runs."""
    costs = [run_cost(p) for p in runs]
    if len(costs) == 1:
        return costs[0]
    merged = {}
    for key in COST_FIELDS:
        values = [c.get(key) for c in costs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if len(set(map(str, values))) == 1 or not numeric:  # the same in every run (parameters, steps, method)
            merged[key] = values[0]
        else:
            merged[key] = round(sum(values) / len(values), 1)
    return {**merged, "runs": len(runs)}


def continued_stages(systems: list[list[Path]], results: list, examples: dict, table: dict,
                     n_resamples: int) -> list[dict]:
    """For each system that started from another compared system's model (a second stage): every
    task's primary metric, paired against that system on the same examples (as improvements).
    examples: task -> system -> seed -> rows by key (compare_runs reads them once)."""
    index = {runs_[0].resolve(): j for j, runs_ in enumerate(systems)}
    found = []
    for i, runs_ in enumerate(systems):
        parent = RunFolder.of(runs_[0]).parent()
        j = index.get(parent.path.resolve()) if parent is not None else None
        if j is None:
            continue
        tests = []
        for task, rows in examples.items():
            info = results[j][0]["tasks"][task]
            metric = info["primary_metric"]
            if not info["metrics"].get(metric, {}).get("ci"):
                continue
            test = compare_metric(metric, rows[i], rows[j], info.get("labels"), n_resamples,
                                  higher=info["metrics"][metric].get("higher_is_better"))
            if test is not None:
                tests.append({"task": task, "metric": metric, **improvement(test)})
        found.append({"system": table["runs"][i], "label": table["labels"][i], "after": table["runs"][j],
                      "after_label": table["labels"][j], "tests": tests})
    return found


def unique_names(paths: list[Path]) -> list[str]:
    """Folder names, with the parent's name added where two are alike (run-a/final, run-b/final)."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def compare_markdown(table: dict) -> str:
    return "\n".join(["# Comparison", ""] + compare_sections(table, level=2)) + "\n"


def compare_sections(table: dict, level: int = 2) -> list[str]:
    """compare.md's body as lines, its section headings at `level` (the run report nests them one
    level deeper than compare.md does)."""
    h = "#" * level
    names = table["runs"]
    head = "| task | metric | " + " | ".join(names) + " |"
    lines = [f"Paired on fewer examples than scored: {u['task']}: {u['paired']} that every run scored "
             f"({scored_counts(u['scored'])} scored)." for u in
             table.get("unpaired") or []]
    lines += [""] if lines else []
    lines += [f"Paired tests: each system minus {names[0]} on the same examples "
             "(diff, 95% CI, p, the test that gave them, and the smallest change it could detect at 80% power; "
             "docs/evaluation.md).", "", head, "|" + "---|" * (len(names) + 2)]
    for row in table["rows"]:
        cells = []
        for i, v in enumerate(row["values"]):
            cell = "n/a" if v is None else f"{v['value']:.4f} [{v['ci'][0]:.4f}, {v['ci'][1]:.4f}]"
            if v is not None and v.get("per_seed"):
                cell += f" (seeds: {', '.join(f'{x:.4f}' for x in v['per_seed'])}; sd {v['seed_sd']:.4f})"
            t = row["tests"][i] if i < len(row["tests"]) else None
            if t:
                cell += f"<br>Δ {_diff(t)}"
            cells.append(cell)
        lines.append(f"| {row['task']} | {row['metric']}{' *' if row['primary'] else ''} | " + " | ".join(cells) + " |")
    if table.get("trade_off"):
        tuned = table.get("tuned_task") or "each system's tuned task"
        change = change_label(table["trade_off"])
        lines += ["", f"{h} Gain on {tuned} vs change on the other tasks", "",
                  f"Each against {names[0]} on the same examples, higher = better (diff, 95% CI, p, test).",
                  "", f"| system | tuned task | gain | {change} | per task |", "|---|---|---|---|---|"]
        for point in table["trade_off"]:
            g = point["gain"]
            per_task = "; ".join(f"{o['task']}{'' if o['held_out'] else ' (trained on)'} {_diff(o)}"
                                 for o in point["others"])
            value = "n/a" if point["change"] is None else f"{point['change']:+.4f}"
            lines.append(f"| {point['label']} | {point.get('tuned_task') or 'n/a'} | {_diff(g) if g else 'n/a'} "
                         f"| {value} | {per_task} |")
    if table.get("continued"):
        lines += ["", f"{h} Second stages: each against the model it continued from", "",
                  "Paired on the same examples, higher = better (diff, 95% CI, p, test).", "",
                  "| system | continued from | change per task |", "|---|---|---|"]
        for c in table["continued"]:
            per_task = "; ".join(f"{t['task']} ({t['metric']}) {_diff(t)}" for t in c["tests"])
            lines.append(f"| {c['label']} | {c['after_label']} | {per_task} |")
    lines += ["", f"{h} Cost", "", "| run | " + " | ".join(COST_FIELDS) + " |", "|" + "---|" * (len(COST_FIELDS) + 1)]
    for name, cost in zip(names, table["costs"]):
        lines.append(f"| {name} | " + " | ".join("n/a" if cost.get(k) is None else str(cost.get(k)) for k in COST_FIELDS) + " |")
    return lines


def change_label(points: list[dict]) -> str:
    """What a trade-off's change is (every point's is over the same tasks): "change on a, b (mean
    improvement, 0-1 scale)", or one unbounded task's "change on c (token_nll improvement)"."""
    found = next((p for p in points if p.get("change_tasks")), None)
    if found is None:
        return "change on the other tasks"
    unit = "mean improvement, 0-1 scale" if found["change_unit"] == "0-1" else f"{found['change_unit']} improvement"
    return f"change on {', '.join(found['change_tasks'])} ({unit})"


def _diff(d: dict) -> str:
    seeds = ""
    if d.get("holds_in_every_seed") is not None:
        seeds = "; holds in every seed" if d["holds_in_every_seed"] else "; not in every seed"
    return (f"{d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}] ({p_clause(d['p_value'])}, {d.get('test', 'n/a')}; "
            f"detectable {mde_text(d)}{seeds})")
