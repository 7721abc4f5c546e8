"""Report sections for a folder holding several systems side by side: compare.json, written by
`tunelab compare --output DIR`, by the demo (its base model and training runs) and by a study.

Metric bars with CIs, the gain-vs-forgetting plot, the per-task table with paired tests against
the first system, the trade-off table, second stages against the system each continued from,
each system's cost, and a link to each run's own report.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from tunelab.report.plots import embed
from tunelab.evaluate.comparison import mde_text
from tunelab.report.text import fmt, p_with_test

COSTS = [("method", "method"), ("steps", "steps"), ("wall_s", "wall time (s)"), ("train_s", "training steps (s)"),
         ("train_tokens", "training tokens"), ("trainable_params", "trainable parameters"), ("peak_rss_mb", "peak memory (RSS, MB)")]


def _value(v: dict | None) -> str:
    """A system's score: value [95% CI], and with several training seeds each seed's value and their sd."""
    if v is None:
        return "n/a"
    ci = v.get("ci")
    text = fmt(v["value"]) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "")
    if v.get("per_seed"):
        text += f"; seeds {', '.join(fmt(x) for x in v['per_seed'])}"
    if v.get("seed_sd") is not None:
        text += f"; seed sd {fmt(v['seed_sd'])}"
    return text


def _paired(d: dict | None, metric: str | None = None) -> str:
    """A paired difference: diff [95% CI], p (the test's name), and what it could detect."""
    if not d:
        return "n/a"
    text = f"{d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}], {p_with_test(d)}"
    if metric and d.get("mde") is not None:
        text += f"; could detect {mde_text({**d, 'metric': metric})}"
    if d.get("holds_in_every_seed") is not None:
        text += f"; holds in every seed: {'yes' if d['holds_in_every_seed'] else 'no'}"
    return text


def _test(t: dict | None, metric: str) -> str:
    return f"Δ {_paired(t, metric)}" if t else ""


def _tone(d: dict | None) -> str:
    """The cell class of a paired difference (higher = better): bad when its CI is below zero,
    good when above, none when it includes zero."""
    if not d:
        return ""
    return " class='bad'" if d["ci"][1] < 0 else " class='good'" if d["ci"][0] > 0 else ""


def report_link(run_path: str, out: Path) -> str | None:
    """A relative link from the report being written to a system's own report.html, if it has one."""
    target = Path(run_path) / "report.html"
    return os.path.relpath(target, out) if target.exists() else None


def systems_html(table: dict, figures: dict, out: Path) -> list[str]:
    from tunelab.evaluate.compare import scored_counts

    e = html.escape
    labels = table.get("labels") or table["runs"]
    first = labels[0]
    res = ["<h2 id='systems'>Systems side by side</h2>",
           f"<p>{len(labels)} systems; paired tests are against <b>{e(first)}</b>, on the examples every "
           "system scored.</p>"]
    for u in table.get("unpaired") or []:  # what compare printed on stderr, kept on the page
        res.append(f"<p class='bad' id='unpaired-{e(u['task'])}'>{e(u['task'])}: the tests pair only the "
                   f"{u['paired']} examples every system scored ({e(scored_counts(u['scored']))} scored).</p>")
    res += ["<table id='systems-table'><tr><th>system</th><th>folder</th><th>report</th></tr>"]
    for label, name, path in zip(labels, table["runs"], table["paths"]):
        link = report_link(path, out)
        res.append(f"<tr><td>{e(label)}</td><td>{e(name)}</td><td>"
                   + (f"<a href='{e(link)}'>report</a>" if link else "") + "</td></tr>")
    res.append("</table>")
    for key, alt in (("systems", "metrics per system with 95% CIs"),
                     ("systems-diffs", "paired differences from the first system with 95% CIs")):
        if figures.get(key):
            res.append(embed(figures[key], key, alt))
    if table.get("trade_off"):
        res += trade_off_html(table, figures)
    if table.get("continued"):
        res += continued_html(table, figures)
    res += ["<h2 id='per-task'>Per task</h2>", "<table id='per-task-table'><tr><th>task</th><th>metric</th>"
            + "".join(f"<th>{e(x)}</th>" for x in labels) + "</tr>"]
    for row in table["rows"]:
        cells = "".join(f"<td>{e(_value(v))}<br><small>{e(_test(t, row['metric']))}</small></td>"
                        for v, t in zip(row["values"], row["tests"] + [None] * len(labels)))
        res.append(f"<tr><td>{e(row['task'])}</td><td>{e(row['metric'])}{' *' if row['primary'] else ''}</td>{cells}</tr>")
    res.append("</table><p><small>* the task's primary metric.</small></p>")
    res += ["<h2 id='costs'>Costs</h2>", "<table id='costs-table'><tr><th>system</th>"
            + "".join(f"<th>{e(label)}</th>" for _, label in COSTS) + "</tr>"]
    for label, cost in zip(labels, table["costs"]):
        res.append(f"<tr><td>{e(label)}</td>" + "".join(f"<td>{e(fmt(cost.get(k), 1))}</td>" for k, _ in COSTS) + "</tr>")
    res.append("</table>")
    return res


def _change(d: dict | None) -> str:
    """A paired change on one task as two cells: the task (metric), and the difference toned by its CI."""
    e = html.escape
    task = e(d["task"] + " (" + d["metric"] + ")") if d else ""
    return f"<td>{task}</td><td{_tone(d)}>{e(_paired(d, d and d['metric']))}</td>"


def _grouped_rows(lead: list[str], details: list[str]) -> list[str]:
    """A system's rows, one per detail (its cells, ready): the system's own cells (escaped) only on
    the first row, so that the table reads as one group per system."""
    return ["<tr>" + "".join(f"<td>{x if j == 0 else ''}</td>" for x in lead) + detail + "</tr>"
            for j, detail in enumerate(details)]


def _section(key: str, title: str, intro: str, alt: str, header: list[str], rows: list[str], figures: dict) -> list[str]:
    """The frame the trade-off and second-stage sections share: heading, what is paired (`intro`,
    HTML), the figure when drawn, then the table; every id derives from `key`."""
    res = [f"<h2 id='{key}'>{title}</h2>", f"<p>{intro}</p>"]
    if figures.get(key):
        res.append(embed(figures[key], key, alt))
    res.append(f"<table id='{key}-table'><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>")
    return res + rows + ["</table>"]


def trade_off_html(table: dict, figures: dict) -> list[str]:
    from tunelab.evaluate.compare import change_label

    e = html.escape
    first = (table.get("labels") or table["runs"])[0]
    tuned = (f"the tuned task <b>{e(table['tuned_task'])}</b>" if table.get("tuned_task")
             else "each system's own tuned task (the column <i>tuned task</i>; one panel of the plot per task)")
    intro = (f"Gain on {tuned} against the {e(change_label(table['trade_off']))}, "
             f"each a paired difference against <b>{e(first)}</b> on the same examples (higher = better; a change "
             "below 0 is forgetting). Systems marked * are on the Pareto front of their tuned task: none of the "
             "others is better on both.")
    rows = []
    for point in table["trade_off"]:
        gain = e(_paired(point["gain"], point["gain"] and point["gain"]["metric"]))
        task = point.get("tuned_task") or table.get("tuned_task")
        task = e(f"{task} ({point['gain']['metric']})" if task and point["gain"] else task or "n/a")
        # A system that changed nothing else still gets its row, for its gain.
        rows += _grouped_rows([e(point["label"]), task, gain],
                              [_change(o) + f"<td>{'' if not o else ('no' if o['held_out'] else 'yes')}</td>"
                               for o in point["others"] or [None]])
    return _section("trade-off", "Learning vs forgetting", intro, "gain vs forgetting",
                    ["system", "tuned task", "gain [95% CI], p", "task", "change [95% CI], p", "trained on it"],
                    rows, figures)


def continued_html(table: dict, figures: dict) -> list[str]:
    """Second stages against the model each continued from: what the later task cost the earlier one."""
    e = html.escape
    intro = ("Each system that continued training from another system's model, paired against that model "
             "on the same examples (higher = better; below 0 the later training cost the earlier ability).")
    rows = []
    for c in table["continued"]:
        rows += _grouped_rows([e(c["label"]), e(c["after_label"])], [_change(t) for t in c["tests"]])
    return _section("continued", "Second stages", intro, "second stages with paired 95% CIs",
                    ["system", "continued from", "task", "change [95% CI], p"], rows, figures)


def systems_md(table: dict, figure_files: dict) -> list[str]:
    from tunelab.evaluate.compare import compare_sections

    lines = ["## Systems side by side", ""]
    for key, title in (("systems", "Metrics per system"), ("systems-diffs", "Differences from the first system"),
                       ("trade-off", "Learning vs forgetting"), ("continued", "Second stages")):
        if key in figure_files:
            lines += [f"![{title}]({figure_files[key]})", ""]
    return lines + compare_sections(table, level=3) + [""]
