"""The demo's numbers in words and tables: the results files, the terminal story, results.md and
the closing readings.

The results dict (collect_results) holds every system's metrics with CIs, its paired differences
against the base model and, for a second stage, against the model it continued from. With several
training seeds (`tunelab demo --seeds N`) a system's metrics are its seeds' mean (every seed's
value kept), its paired tests are compare.json's over its seeds (seed and example variance in one
test: seed_tests), and `by_seed` keeps each seed's own systems. Nothing is computed here but
formatting, means over seeds and the readings' choice of which paired CIs exclude zero and which
rankings hold in every seed.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from tunelab.evaluate.comparison import mde_text
from tunelab.files import write_json, write_text
from tunelab.metrics.stats import p_clause

# A paired test's numbers, as results.json keeps them. mde: the smallest change the test could
# detect (80% power, alpha 0.05); the seed keys come with a system trained over several seeds.
TEST_KEYS = ("metric", "n", "diff", "ci", "p_value", "mde", "per_seed_diffs", "seed_sd", "holds_in_every_seed")


def items(results: dict) -> str:
    return ", ".join(f"{name} n={res['n']}" for name, res in results["tasks"].items())


def metric(tasks: dict, task: str, name: str) -> dict | None:
    entry = tasks.get(task, {}).get("metrics", {}).get(name)
    return None if entry is None else {"value": entry["value"], "ci": entry.get("ci")}


def paired(report: dict) -> dict:
    """A forgetting report's rows as results.json keeps them: task -> test."""
    return {row["task"]: pick(row) for row in report["tasks"]}


def pick(test: dict) -> dict:
    return {k: test[k] for k in TEST_KEYS if k in test}


def collect_results(state, wall_s: float, systems: dict) -> dict:
    """results.json's content (state: the demo's DemoState)."""
    results = {"seed": state.seed, "model": state.model, "precision": state.precision, "plan": asdict(state.plan),
               "folder": str(state.folder), "systems": systems, "wall_s": round(wall_s, 1),
               "training_seeds": state.train_seeds}
    if state.several:
        results["by_seed"] = {str(s): state.by_seed[s] for s in state.train_seeds}
    return results


def write_results(state, wall_s: float) -> tuple[dict, Path]:
    """results.json, results.md, every run's report, compare.json and the demo's report.html."""
    from tunelab.evaluate.compare import compare_runs
    from tunelab.experiments.seeds import write_seeds
    from tunelab.report import write_report

    folder = state.folder
    systems = pool_seeds(state.by_seed, folder) if state.several else state.by_seed[state.train_seed]
    results = collect_results(state, wall_s, systems)
    write_json(folder / "results.json", results)  # compare reads the demo's systems from it
    for run in state.all_runs:
        write_report(run)  # each run's own: loss curves, forgetting, predictions before vs after
    if state.several:
        for name in systems:
            if name != "base":
                write_seeds(folder / name, state.train_seeds)
    # The demo folder's report.html: every system side by side (compare.json), the trade-off
    # of gain on sentiment against the change on QA, and links to each run's report. With several
    # seeds each system is its seeds folder: its tests count the seed-to-seed variance too.
    table = compare_runs([str(folder)], output_dir=folder, tuned_task="sentiment", n_resamples=state.plan.bootstrap)
    if state.several:
        seed_tests(results, table)
    write_text(folder / "results.md", results_markdown(results))
    html, _md = write_report(folder)
    return results, html


def pool_seeds(by_seed: dict, folder: Path) -> dict:
    """Each system over its training seeds: metric means with every seed's value, its seeds folder
    and runs, the first seed's costs with the mean training time. CIs and paired tests come from
    compare.json afterwards (seed_tests): a mean of per-seed CIs is not a CI."""
    seeds = list(by_seed)
    pooled = {}
    for name, first in by_seed[seeds[0]].items():
        if name == "base":  # scored once: the same for every seed
            pooled[name] = first
            continue
        entries = [by_seed[s][name] for s in seeds]
        system = {k: first[k] for k in ("label", "trained_on", "n", "after", "after_label") if k in first}
        for task, metrics in (("sentiment", ("accuracy", "macro_f1", "unmapped")), ("qa", ("token_f1", "exact_match"))):
            system[task] = {m: over_seeds([e[task][m] for e in entries]) for m in metrics}
        system["run"] = str(folder / name)  # the seeds folder (seeds.json): compare reads it as one system
        system["seed_runs"] = [e["run"] for e in entries]
        system["cost"] = {**first["cost"], "wall_s": sum(e["cost"]["wall_s"] or 0 for e in entries) / len(entries)}
        pooled[name] = system
    return pooled


def over_seeds(values: list) -> dict | None:
    if any(v is None for v in values):
        return None
    per_seed = [v["value"] for v in values]
    return {"value": sum(per_seed) / len(per_seed), "ci": None, "per_seed": per_seed}


def seed_tests(results: dict, table: dict) -> None:
    """Each system's numbers over its seeds, from compare.json: its values (mean and a CI with the
    seed-to-seed variance in it), its paired tests against the base model (the primary metric's
    row of each task) and, for a second stage, against the system it continued from
    ("continued"). The demo folder's systems are compare's, in the same order."""
    names = list(results["systems"])
    for i, name in enumerate(names[1:], start=1):
        system = results["systems"][name]
        system["vs_base"] = {row["task"]: pick({"metric": row["metric"], **row["tests"][i]})
                             for row in table["rows"] if row["primary"] and row["tests"][i]}
        for row in table["rows"]:  # the system's value over its seeds, with a CI that counts them
            value = row["values"][i]
            if value and value.get("ci") and row["metric"] in system.get(row["task"], {}):
                system[row["task"]][row["metric"]] = {k: value[k] for k in ("value", "ci", "per_seed") if k in value}
    for stage in table.get("continued", []):
        name = names[table["runs"].index(stage["system"])]
        results["systems"][name]["vs_previous"] = {t["task"]: pick(t) for t in stage["tests"]}


def pct(entry: dict | None) -> str:
    """"95.5% [91.1, 99.1]"; over several seeds the mean and the seeds' range: "95.1% (seeds 94.6-95.5)"."""
    if entry is None:
        return "n/a"
    text = f"{100 * entry['value']:.1f}%"
    if entry.get("ci"):
        text += f" [{100 * entry['ci'][0]:.1f}, {100 * entry['ci'][1]:.1f}]"
    if len(entry.get("per_seed") or []) > 1:
        text += f" (seeds {100 * min(entry['per_seed']):.1f}-{100 * max(entry['per_seed']):.1f})"
    return text


def points(d: dict) -> str:
    """A paired difference in percentage points with its CI: "-2.7 points [-12.9, +7.2]"."""
    return f"{100 * d['diff']:+.1f} points [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"


def show_examples(console, eval_dir: Path, task: str, n: int) -> None:
    from tunelab.evaluate.harness import read_examples

    for row in read_examples(eval_dir, task)[:n]:
        review = row["prompt"].split("Text: ", 1)[-1].split("<|im_end|>", 1)[0].strip()
        got = (row.get("scores") or {}).get("predicted_label")
        console.print(f"  review: [italic]{review}[/]  (gold: {row['label']})")
        console.print(f"  model:  [bold]{row['prediction'].strip()!r}[/] -> label {got or 'UNMAPPED'}")


def show_numbers(console, label: str, tasks: dict) -> None:
    s = tasks["sentiment"]["metrics"]
    console.print(f"[bold]{label}[/] on sentiment (n={tasks['sentiment']['n']}): "
                  f"unmappable outputs {int(s['unmapped']['value'])}, accuracy {pct(metric(tasks, 'sentiment', 'accuracy'))}, "
                  f"macro-F1 {100 * s['macro_f1']['value']:.1f}%")
    console.print(f"[bold]{label}[/] on QA (n={tasks['qa']['n']}): token F1 {pct(metric(tasks, 'qa', 'token_f1'))}, "
                  f"exact match {pct(metric(tasks, 'qa', 'exact_match'))}")


def show_forgetting(console, report: dict, against: str = "base") -> None:
    for row in report["tasks"]:
        word = "gain" if row["task"] == report["summary"]["tuned_task"] else "change"
        seen = detectable(row) if row["ci"][0] <= 0 <= row["ci"][1] else ""  # a null result: what it could see
        ci = f"[{100 * row['ci'][0]:+.1f}, {100 * row['ci'][1]:+.1f}]"
        tail = f"; no detectable change: {seen}" if seen else ""
        console.print(f"  {row['task']} {row['metric']} {word} vs {against}: {100 * row['diff']:+.1f} points "
                      f"(paired 95% CI {ci}, {p_clause(row['p_value'])}{tail})")


def detectable(d: dict) -> str:
    """What a test that found nothing could have found: "n = 60, this test could see changes of
    ≥ 14.2 points" (mde: the smallest change it detects 80% of the time at alpha 0.05)."""
    parts = [f"n = {d['n']}"] if d.get("n") is not None else []
    if d.get("mde") is not None:
        parts.append(f"this test could see changes of {mde_text(d)}")
    return ", ".join(parts)


def seed_values(results: dict, name: str, key: str, task: str) -> list[float]:
    """The paired difference of each training seed's own run (one value with one seed)."""
    by_seed = results.get("by_seed") or {}
    if by_seed:
        return [systems[name][key][task]["diff"] for systems in by_seed.values()]
    return [results["systems"][name][key][task]["diff"]]


def seed_clause(d: dict, per_seed: list[float]) -> str:
    """Over several training seeds: whether the comparison holds in every seed (compare.json's
    seed-aware test says) and each seed's own paired difference."""
    if len(per_seed) < 2:
        return ""
    values = ", ".join(f"{100 * x:+.1f}" for x in per_seed)
    holds = d.get("holds_in_every_seed")
    verdict = "per seed" if holds is None else "holds in every seed" if holds else "does not hold in every seed"
    return f"{verdict} ({len(per_seed)} seeds: {values})"


def clause(d: dict, null: bool, per_seed: list[float]) -> str:
    """" (p = 0.75; n = 60, this test could see changes of ≥ 14.2 points; holds in every seed (...))":
    the p-value, what a null result could have seen, and the seeds (per_seed: seed_values)."""
    parts = [p_clause(d["p_value"])] if d.get("p_value") is not None else []
    parts += [part for part in (detectable(d) if null else "", seed_clause(d, per_seed)) if part]
    return f" ({'; '.join(parts)})" if parts else ""


COLUMNS = ("system", "sentiment accuracy [95% CI]", "macro-F1", "unmappable", "QA token F1 [95% CI]",
           "QA token F1 change vs base [paired 95% CI] (p)", "train s")


def summary_rows(results: dict) -> list[list[str]]:
    rows = []
    for s in results["systems"].values():
        change = "-"
        if "vs_base" in s:
            d = s["vs_base"]["qa"]
            change = f"{100 * d['diff']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}] ({p_clause(d['p_value'])})"
        unmapped = s["sentiment"]["unmapped"]  # over several seeds, their mean count
        rows.append([s["label"], pct(s["sentiment"]["accuracy"]), f"{100 * s['sentiment']['macro_f1']['value']:.1f}%",
                     f"{unmapped['value']:g}/{s['n']['sentiment']}", pct(s["qa"]["token_f1"]), change,
                     f"{s['cost']['wall_s']:.0f}" if "cost" in s else "-"])
    return rows


def qa_cost_reading(results: dict) -> str:
    """One sentence on the held-out cost: which systems that never trained on QA lost QA token F1
    (paired CI below zero), or that none did. A system that trained on QA questions (the mixture,
    a QA second stage) is not a forgetting measure for QA, whatever its sign."""
    lost, kept = [], []
    for name, s in results["systems"].items():
        if "vs_base" not in s or "qa" in s["trained_on"]:
            continue
        d = s["vs_base"]["qa"]
        null = d["ci"][0] <= 0 <= d["ci"][1]
        per_seed = seed_values(results, name, "vs_base", "qa")
        (lost if d["ci"][1] < 0 else kept).append(f"{s['label']} {points(d)}{clause(d, null, per_seed)}")
    if not lost and not kept:
        return ""
    if lost:
        return "cost on held-out QA: " + "; ".join(lost) + " (paired CI below zero)" + \
            (f"; no detectable change for {'; '.join(kept)}" if kept else "")
    return ("cost on held-out QA: none detectable at these settings: every sentiment-only system's QA token F1 "
            "change has a paired 95% CI that includes zero: " + "; ".join(kept))


def second_task_reading(results: dict) -> str:
    """One sentence on what a second task (QA) cost the first (sentiment): each sequential system's
    paired change against the model it continued from."""
    parts = []
    for name, s in results["systems"].items():
        if "vs_previous" not in s:
            continue
        d = s["vs_previous"]["sentiment"]
        verdict = "lost" if d["ci"][1] < 0 else "gained" if d["ci"][0] > 0 else "no detectable change:"
        per_seed = seed_values(results, name, "vs_previous", "sentiment")
        parts.append(f"{s['label']}: {verdict} {points(d)}{clause(d, verdict.startswith('no'), per_seed)} "
                     f"vs {s['after_label']}")
    return "cost of a second task on sentiment accuracy: " + "; ".join(parts) if parts else ""


# Systems that differ in the method alone: (LoRA, full fine-tuning, which test, task, what it measures).
METHOD_PAIRS = (("lora-sentiment", "full-sentiment", "vs_base", "qa", "QA token F1 change vs base"),
                ("lora-then-qa", "full-then-qa", "vs_previous", "sentiment", "sentiment accuracy change in the "
                 "second stage"))


def ranking_reading(results: dict) -> str:
    """LoRA against full fine-tuning, as far as the seeds support it: with one training seed, the
    numbers and the warning that another seed may order them otherwise; with several, whether one
    method is ahead in every seed (each seed's own paired difference)."""
    parts, systems = [], results["systems"]
    for lora, full, key, task, what in METHOD_PAIRS:
        if task not in systems.get(lora, {}).get(key, {}) or task not in systems.get(full, {}).get(key, {}):
            continue
        a, b = seed_values(results, lora, key, task), seed_values(results, full, key, task)
        if len(a) == 1:
            parts.append(f"{what}: LoRA {100 * a[0]:+.1f}, full fine-tuning {100 * b[0]:+.1f} points")
            continue
        ahead, behind = sum(x > y for x, y in zip(a, b)), sum(x < y for x, y in zip(a, b))
        order = ("LoRA higher in every seed" if ahead == len(a) else "full fine-tuning higher in every seed"
                 if behind == len(a) else f"no order holds in every seed: LoRA higher in {ahead}, full fine-tuning "
                 f"in {behind} of {len(a)}")
        parts.append(f"{what}: {order} (LoRA {', '.join(f'{100 * x:+.1f}' for x in a)}; "
                     f"full fine-tuning {', '.join(f'{100 * x:+.1f}' for x in b)})")
    if not parts:
        return ""
    if len(results.get("training_seeds") or [0]) == 1:
        return ("LoRA vs full fine-tuning: " + "; ".join(parts) +
                " (one training seed: this ranking may not hold for another seed; --seeds 3 trains each over three)")
    return f"LoRA vs full fine-tuning over {len(results['training_seeds'])} training seeds: " + "; ".join(parts)


def readings(results: dict) -> list[str]:
    return [line for line in (qa_cost_reading(results), second_task_reading(results), ranking_reading(results))
            if line]


def title(results: dict) -> str:
    """"seed 0" or, over several training seeds, "seed 0, means over training seeds 0, 1, 2"."""
    seeds = results.get("training_seeds") or []
    if len(seeds) < 2:
        return f"seed {results['seed']}"
    return f"seed {results['seed']}, means over training seeds {', '.join(map(str, seeds))}"


def results_markdown(results: dict) -> str:
    lines = [f"# tunelab demo ({title(results)})", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(results)]
    found = readings(results)
    return "\n".join(lines + ([""] + found if found else [])) + "\n"


def show_summary(console, results: dict) -> None:
    from rich.table import Table

    table = Table(title=f"tunelab demo, {title(results)}: what tuning gained and what it cost")
    for col in COLUMNS:
        table.add_column(col)
    for row in summary_rows(results):
        table.add_row(*row)
    console.print(table)
    for line in readings(results):
        console.print(line)


def show_phases(console, phases: list, wall_s: float) -> None:
    from rich.table import Table

    table = Table(title=f"phase timings (total {wall_s / 60:.1f} min)")
    table.add_column("phase")
    table.add_column("wall s", justify="right")
    table.add_column("CPU s", justify="right")
    table.add_column("detail")
    for p in phases:
        table.add_row(p.name, f"{p.seconds:.0f}", f"{p.cpu_s:.0f}", p.detail)
    console.print(table)
