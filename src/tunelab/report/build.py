"""Collect a run folder's results and render them as report.html and report.md."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from tunelab.config.base import UserError
from tunelab.config.scoring import scale_of
from tunelab.evaluate.comparison import mde_text
from tunelab.files import write_text
from tunelab.report import experiments, plots, systems
from tunelab.report.trade_off import gain_vs_change
from tunelab.report.text import fmt as _fmt
from tunelab.report.text import p_with_test
from tunelab.runfolder import RunFolder

COST_ROWS = [("method", "method"), ("base_model", "base model"), ("status", "status"), ("steps", "steps"),
             ("wall_s", "wall time (s)"), ("train_tokens", "training tokens"),
             ("trainable_params", "trainable parameters"), ("total_params", "total parameters"),
             ("peak_rss_mb", "peak memory (RSS, MB)"), ("best_val_loss", "best validation loss")]
EXAMPLES_PER_TASK = 3


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _png(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode("ascii") if path.exists() else None


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill: the rest of the log is still good
    return out


def over_seeds(run: Path) -> dict | None:
    """A continual experiment over training seeds (matrix_over_seeds.json) in matrix.json's shape:
    the cells' means as its scores, the mean ACC / BWT / FWT as its summary, per-seed figures beside."""
    data = _json(run / "matrix_over_seeds.json")
    if not data:
        return None
    matrices = {}
    for key, m in data["matrices"].items():
        matrices[key] = {"tasks": data["tasks"], "stages": data["stages"], "scores": m["mean"],
                         "metric": f"{m['metric']}, mean over training seeds {', '.join(map(str, data['seeds']))}",
                         "higher_is_better": m["higher_is_better"],
                         "summary": {k: s["mean"] for k, s in m["summary"].items()},
                         "seed_summary": m["summary"], "backward_tests": m["backward_tests"]}
    return {"tasks": data["tasks"], "stages": data["stages"], "learned_at": data["learned_at"], "matrices": matrices}


def training_objective(run: Path) -> dict:
    """{"objective", "dpo_loss"} the run trained with (its resolved config's train section): what
    its training loss is. A folder without a config (not a run, or an old one) trained SFT."""
    train = RunFolder.of(run).config.get("train") or {}
    return {"objective": train.get("objective") or "sft",
            "dpo_loss": (train.get("preference") or {}).get("dpo_loss")}


def collect(run_dir: str | Path) -> dict:
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"{run}: no such run folder")
    forgetting = _json(run / "forgetting" / "forgetting.json")
    eval_dir = next((d for d in (run / "eval", run / "forgetting" / "tuned")
                     if (d / "results.json").exists()), None)
    matrix, search = _json(run / "matrix.json") or over_seeds(run), _json(run / "search.json")
    compared = _json(run / "compare.json")  # several systems side by side (compare, demo, study)
    examples = []
    if forgetting:
        for row in forgetting["tasks"]:
            # relative to forgetting.json's folder (files.stored_path); an absolute path stays itself
            base = {e["key"]: e for e in _jsonl(run / "forgetting" / forgetting["base_dir"]
                                                / f"{row['task']}.examples.jsonl")}
            tuned = _jsonl(run / "forgetting" / forgetting["tuned_dir"] / f"{row['task']}.examples.jsonl")
            # the per-example score behind the metric (older files lack score_key: the metric's own name)
            key = row.get("score_key") or row["metric"]
            for e in tuned[:EXAMPLES_PER_TASK]:
                b = base.get(e["key"], {})
                examples.append({"task": row["task"], "key": e["key"], "prompt": e.get("prompt", ""),
                                 "references": e.get("references") or [], "before": b.get("prediction"),
                                 "after": e.get("prediction"), "score_key": key,
                                 "score_before": (b.get("scores") or {}).get(key),
                                 "score_after": (e.get("scores") or {}).get(key)})
    parts = {
        "run": run, "name": run.name,
        "objective": training_objective(run),
        "summary": _json(run / "summary.json"),
        "events": _jsonl(run / "metrics.jsonl"),
        "eval": _json(eval_dir / "results.json") if eval_dir else None,
        "eval_dir": eval_dir,
        "forgetting": forgetting,
        "examples": examples,
        # experiment folders: a continual root (matrix) or a search study
        "continual": {"matrix": matrix, "heatmap": _png(run / "matrix.png")} if matrix else None,
        "search": {"summary": search, "trials": _json(run / "trials.json") or [], "plot": _png(run / "search.png")}
        if search else None,
        "systems": compared,
    }
    if not any(parts[k] for k in ("summary", "events", "eval", "forgetting", "continual", "search", "systems")):
        raise UserError(f"{run}: nothing to report: no summary.json or metrics.jsonl (a run), eval/results.json, "
                        "forgetting/forgetting.json, matrix.json (a continual experiment), search.json (a study) "
                        "or compare.json (tunelab compare --output, a demo)")
    return parts


def _metric_rows(results: dict) -> list[dict]:
    rows = []
    for task, res in results["tasks"].items():
        for metric, entry in res["metrics"].items():
            if entry.get("ci"):
                rows.append({"task": task, "metric": metric, "label": f"{task}: {metric}", "value": entry["value"],
                             "ci": entry["ci"], "n": entry["n"]})
    return rows


def _short(text: str | None, n: int = 400) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= n else "…" + text[-n:]


STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;"
         "vertical-align:top}th{background:#f3f3f3}img{max-width:100%;display:block;margin:1em 0}"
         "figure.plot{margin:1em 0}figure.plot svg{max-width:100%;height:auto;display:block}"
         ".pred{white-space:pre-wrap;font-family:monospace;font-size:90%}.bad{color:#b00}.good{color:#070}")


def render_html(parts: dict, figures: dict, folder: Path) -> str:
    """folder: where report.html goes (links to other reports are relative to it)."""
    e = html.escape
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>tunelab report: {e(parts['name'])}</title>", f"<style>{STYLE}</style>",
           "</head><body>", f"<h1>tunelab report: {e(parts['name'])}</h1>"]
    if parts["systems"]:
        out += systems.systems_html(parts["systems"], figures, folder)
    s = parts["summary"]
    if s:
        out.append("<h2 id='cost'>Run and cost</h2><table id='cost-table'>")
        out += [f"<tr><th>{e(label)}</th><td>{e(_fmt(s.get(key), 3))}</td></tr>" for key, label in COST_ROWS
                if s.get(key) is not None]
        out.append("</table>")
    if figures.get("loss"):
        out += ["<h2 id='loss'>Loss curves</h2>", plots.embed(figures["loss"], "loss", "loss curves")]
        if loss_note(parts):
            out.append(f"<p id='loss-note'>{e(loss_note(parts))}</p>")
    if parts["eval"]:
        out += ["<h2 id='metrics'>Metrics</h2>"]
        if figures.get("metrics"):
            out.append(plots.embed(figures["metrics"], "metrics", "metrics with 95% CIs"))
        out.append("<table id='metrics-table'><tr><th>task</th><th>metric</th><th>value</th><th>95% CI</th><th>n</th></tr>")
        for r in _metric_rows(parts["eval"]):
            out.append(f"<tr><td>{e(r['task'])}</td><td>{e(r['metric'])}</td><td>{_fmt(r['value'])}</td>"
                       f"<td>[{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]</td><td>{r['n']}</td></tr>")
        out.append("</table>")
    if parts["forgetting"]:
        out += forgetting_html(parts["forgetting"], figures)
    if parts["examples"]:
        out += examples_html(parts["examples"])
    if parts["continual"]:
        out += experiments.continual_html(parts["continual"])
    if parts["search"]:
        out += experiments.search_html(parts["search"])
    if parts["eval"] or parts["forgetting"] or parts["systems"]:
        out.append("<p><small>Every number above is computed from per-example files next to it "
                   "(eval/*.examples.jsonl, forgetting/*/*.examples.jsonl); CIs are percentile bootstrap intervals "
                   "unless the test named beside them says otherwise (docs/evaluation.md).</small></p>")
    out.append("</body></html>")
    return "\n".join(out)


def loss_note(parts: dict) -> str | None:
    """For a preference objective: what each loss curve is (None for SFT, where both are the same
    cross-entropy)."""
    objective = parts["objective"]["objective"]
    if objective == "sft":
        return None
    return (f"train.objective {objective}: the training loss is the {objective} objective (docs/preference.md); "
            "val_loss and the best validation loss are the SFT cross-entropy of the validation split's "
            f"{'answers' if objective == 'kto' else 'chosen answers'} per completion token, "
            "a different quantity on a different scale.")


def _value_ci(v: dict) -> str:
    ci = v.get("ci")
    return _fmt(v["value"]) + (f"<br><small>[{_fmt(ci[0])}, {_fmt(ci[1])}]</small>" if ci else "")


def forgetting_html(f: dict, figures: dict) -> list[str]:
    """The forgetting section: the figures, the gain and drop sentences, one table row per task."""
    e = html.escape
    sm = f["summary"]
    out = ["<h2 id='forgetting'>Forgetting: base vs tuned</h2>"]
    for key, alt in (("forgetting", "tuned - base per task with paired 95% CIs"),
                     ("forgetting-scores", "base and tuned scores with 95% CIs")):
        if figures.get(key):
            out.append(plots.embed(figures[key], key, alt))
    if sm.get("gain"):
        g = sm["gain"]
        row = next((r for r in f["tasks"] if r["task"] == sm["tuned_task"]), {})
        out.append(f"<p id='gain'>Gain on the tuned task <b>{e(str(sm['tuned_task']))}</b> ({e(g['metric'])}): "
                   f"<b>{g['diff']:+.4f}</b> (95% CI [{_fmt(g['ci'][0])}, {_fmt(g['ci'][1])}], "
                   f"{e(p_with_test({'test': row.get('test'), **g}))})</p>")
    if sm.get("held_out_change") is not None:
        out.append(f"<p id='held-out'>Held-out change ({e(', '.join(sm['held_out_change_tasks']))}): "
                   f"<b>{sm['held_out_change']:+.4f}</b> (mean improvement on a 0-1 scale; negative = worse after "
                   "tuning; docs/evaluation.md)</p>")
    elif sm.get("average_drop") is not None:  # a forgetting.json written before the held-out change
        out.append(f"<p id='drop'>Average drop over held-out tasks: <b>{sm['average_drop']:+.4f}</b> "
                   "(base - tuned; positive = worse after tuning)</p>")
    mde = any("mde" in r for r in f["tasks"])
    out.append("<table id='forgetting-table'><tr><th>task</th><th>metric</th><th>n</th><th>base [95% CI]</th>"
               "<th>tuned [95% CI]</th><th>diff (tuned - base)</th><th>95% CI (paired)</th><th>test, p</th>"
               + ("<th>could detect (80% power)</th>" if mde else "") + "</tr>")
    for r in f["tasks"]:
        cls = "good" if r["improvement"] >= 0 else "bad"
        scale = " (0-100 scale)" if scale_of(r["metric"], r) == "0-100" else ""
        out.append(f"<tr><td>{e(r['task'])}</td><td>{e(r['metric'] + scale)}</td><td>{r['n']}</td>"
                   f"<td>{_value_ci(r['base'])}</td><td>{_value_ci(r['tuned'])}</td>"
                   f"<td class='{cls}'>{r['diff']:+.4f}</td><td>[{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]</td>"
                   f"<td>{e(p_with_test(r))}</td>"
                   + (f"<td>{e(mde_text(r))}</td>" if mde else "") + "</tr>")
    out.append("</table>")
    return out


def examples_html(examples: list[dict]) -> list[str]:
    e = html.escape
    out = ["<h2 id='examples'>Example predictions before vs after</h2><table id='examples-table'>"
           "<tr><th>task</th><th>prompt (end)</th><th>reference</th><th>before</th><th>after</th></tr>"]
    for x in examples:
        score = lambda v: f"<br><small>{e(x['score_key'])}={_fmt(v, 3)}</small>"  # noqa: E731
        out.append(f"<tr><td>{e(x['task'])}<br><small>{e(x['key'])}</small></td>"
                   f"<td class='pred'>{e(_short(x['prompt'], 300))}</td>"
                   f"<td class='pred'>{e(_short((x['references'] or [''])[0], 300))}</td>"
                   f"<td class='pred'>{e(_short(x['before'], 300))}{score(x['score_before'])}</td>"
                   f"<td class='pred'>{e(_short(x['after'], 300))}{score(x['score_after'])}</td></tr>")
    out.append("</table>")
    return out


def render_md(parts: dict, figure_files: dict) -> str:
    lines = [f"# tunelab report: {parts['name']}", ""]
    if parts["systems"]:
        lines += systems.systems_md(parts["systems"], figure_files)
    s = parts["summary"]
    if s:
        lines += ["## Run and cost", "", "| | |", "|---|---|"]
        lines += [f"| {label} | {_fmt(s.get(key), 3)} |" for key, label in COST_ROWS if s.get(key) is not None]
        lines.append("")
    for key, title in (("loss", "Loss curves"), ("metrics", "Metrics"), ("forgetting", "Forgetting"),
                       ("forgetting-scores", "Base and tuned scores")):
        if key in figure_files:
            lines += [f"![{title}]({figure_files[key]})", ""]
            if key == "loss" and loss_note(parts):
                lines += [loss_note(parts), ""]
    if parts["eval"]:
        lines += ["## Metrics", "", "| task | metric | value | 95% CI | n |", "|---|---|---|---|---|"]
        lines += [f"| {r['task']} | {r['metric']} | {_fmt(r['value'])} | [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}] | {r['n']} |"
                  for r in _metric_rows(parts["eval"])]
        lines.append("")
    if parts["forgetting"]:
        from tunelab.evaluate.forgetting import forgetting_markdown

        lines += ["## " + forgetting_markdown(parts["forgetting"]).lstrip("# "), ""]
    if parts["examples"]:
        lines += ["## Example predictions before vs after", "", "| task | reference | before | after |", "|---|---|---|---|"]
        cell = lambda t: _short(t, 200).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines += [f"| {x['task']} | {cell((x['references'] or [''])[0])} | {cell(x['before'])} | {cell(x['after'])} |"
                  for x in parts["examples"]]
        lines.append("")
    if parts["continual"]:
        lines += experiments.continual_md(parts["continual"])
        if "matrix" in figure_files:
            lines += [f"![Task x stage matrix]({figure_files['matrix']})", ""]
    if parts["search"]:
        lines += experiments.search_md(parts["search"])
        if "search" in figure_files:
            lines += [f"![Search]({figure_files['search']})", ""]
    return "\n".join(lines) + "\n"


def draw_figures(parts: dict) -> dict:
    """key -> a rendered figure ({"svg", "png"}) or a base64 PNG read from the folder."""
    drawn = {"loss": plots.loss_curves(parts["events"], **parts["objective"])}
    if parts["eval"]:
        drawn["metrics"] = plots.metric_bars(_metric_rows(parts["eval"]), "metrics with 95% bootstrap CIs")
    f = parts["forgetting"]
    if f:
        drawn["forgetting"] = plots.forgetting_bars(f["tasks"], f["summary"].get("tuned_task"))
        drawn["forgetting-scores"] = plots.forgetting_scores(f["tasks"], f["summary"].get("tuned_task"))
    table = parts["systems"]
    if table:
        drawn["systems"] = plots.system_bars(table)
        drawn["systems-diffs"] = plots.system_diffs(table)
        drawn["continued"] = plots.continued_diffs(table)
        if table.get("trade_off"):
            drawn["trade-off"] = gain_vs_change(table["trade_off"],
                                                (table.get("labels") or table["runs"])[0])
    figures = {key: plots.render(fig, key) for key, fig in drawn.items() if fig is not None}
    if parts["continual"] and parts["continual"]["heatmap"]:
        figures["matrix"] = parts["continual"]["heatmap"]
    if parts["search"] and parts["search"]["plot"]:
        figures["search"] = parts["search"]["plot"]
    return figures


def write_report(run_dir: str | Path, output_dir: str | Path | None = None) -> list[Path]:
    parts = collect(run_dir)
    out = Path(output_dir) if output_dir else parts["run"]
    out.mkdir(parents=True, exist_ok=True)
    figures = draw_figures(parts)
    # report.md links PNG files (markdown viewers rarely show data URIs or inline SVG); report.html
    # inlines the SVG.
    figure_files = {}
    if figures:
        (out / "report_files").mkdir(exist_ok=True)
        for key, fig in figures.items():
            png = fig["png"] if isinstance(fig, dict) else base64.b64decode(fig)
            (out / "report_files" / f"{key}.png").write_bytes(png)
            figure_files[key] = f"report_files/{key}.png"
    html_path, md_path = out / "report.html", out / "report.md"
    write_text(html_path, render_html(parts, figures, out))
    write_text(md_path, render_md(parts, figure_files))
    return [html_path, md_path]
