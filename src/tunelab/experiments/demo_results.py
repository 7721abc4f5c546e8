"""The demo's numbers in words and tables: the terminal story, results.md and the closing readings.

Everything here reads the results dict that `demo.collect_results` builds (every system's
metrics with CIs, its paired differences against the base model and, for a second stage, against
the model it continued from); nothing is computed here but formatting and the readings' choice of
which paired CIs exclude zero.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.metrics.stats import p_clause


def items(results: dict) -> str:
    return ", ".join(f"{name} n={res['n']}" for name, res in results["tasks"].items())


def metric(tasks: dict, task: str, name: str) -> dict | None:
    entry = tasks.get(task, {}).get("metrics", {}).get(name)
    return None if entry is None else {"value": entry["value"], "ci": entry.get("ci")}


def pct(entry: dict | None) -> str:
    if entry is None:
        return "n/a"
    text = f"{100 * entry['value']:.1f}%"
    if entry.get("ci"):
        text += f" [{100 * entry['ci'][0]:.1f}, {100 * entry['ci'][1]:.1f}]"
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
        console.print(f"  {row['task']} {row['metric']} {word} vs {against}: {100 * row['diff']:+.1f} points "
                      f"(paired 95% CI [{100 * row['ci'][0]:+.1f}, {100 * row['ci'][1]:+.1f}], {p_clause(row['p_value'])})")


COLUMNS = ("system", "sentiment accuracy [95% CI]", "macro-F1", "unmappable", "QA token F1 [95% CI]",
           "QA token F1 change vs base [paired 95% CI] (p)", "train s")


def summary_rows(results: dict) -> list[list[str]]:
    rows = []
    for s in results["systems"].values():
        change = "-"
        if "vs_base" in s:
            d = s["vs_base"]["qa"]
            change = f"{100 * d['diff']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}] ({p_clause(d['p_value'])})"
        unmapped = s["sentiment"]["unmapped"]
        rows.append([s["label"], pct(s["sentiment"]["accuracy"]), f"{100 * s['sentiment']['macro_f1']['value']:.1f}%",
                     f"{int(unmapped['value'])}/{s['n']['sentiment']}", pct(s["qa"]["token_f1"]), change,
                     f"{s['cost']['wall_s']:.0f}" if "cost" in s else "-"])
    return rows


def qa_cost_reading(results: dict) -> str:
    """One sentence on the held-out cost: which systems that never trained on QA lost QA token F1
    (paired CI below zero), or that none did. A system that trained on QA questions (the mixture,
    a QA second stage) is not a forgetting measure for QA, whatever its sign."""
    lost, kept = [], []
    for s in results["systems"].values():
        if "vs_base" not in s or "qa" in s["trained_on"]:
            continue
        d = s["vs_base"]["qa"]
        (lost if d["ci"][1] < 0 else kept).append(f"{s['label']} {points(d)}")
    if not lost and not kept:
        return ""
    if lost:
        return "cost on held-out QA: " + "; ".join(lost) + " (paired CI below zero)" + \
            (f"; no detectable change for {'; '.join(kept)}" if kept else "")
    return ("cost on held-out QA: none detectable at these settings: every sentiment-only system's QA token F1 "
            "change has a paired 95% CI that includes zero (" + "; ".join(kept) + ")")


def second_task_reading(results: dict) -> str:
    """One sentence on what a second task (QA) cost the first (sentiment): each sequential system's
    paired change against the model it continued from."""
    parts = []
    for s in results["systems"].values():
        if "vs_previous" not in s:
            continue
        d = s["vs_previous"]["sentiment"]
        verdict = "lost" if d["ci"][1] < 0 else "gained" if d["ci"][0] > 0 else "no detectable change:"
        parts.append(f"{s['label']}: {verdict} {points(d)} ({p_clause(d['p_value'])}) vs {s['after_label']}")
    return "cost of a second task on sentiment accuracy: " + "; ".join(parts) if parts else ""


def readings(results: dict) -> list[str]:
    return [line for line in (qa_cost_reading(results), second_task_reading(results)) if line]


def results_markdown(results: dict) -> str:
    lines = [f"# tunelab demo (seed {results['seed']})", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(results)]
    found = readings(results)
    return "\n".join(lines + ([""] + found if found else [])) + "\n"


def show_summary(console, results: dict) -> None:
    from rich.table import Table

    table = Table(title=f"tunelab demo, seed {results['seed']}: what tuning gained and what it cost")
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
