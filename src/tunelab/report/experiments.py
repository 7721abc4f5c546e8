"""Report sections for experiment folders: a continual run's task x stage matrix, a search study.

They render what build.collect read from the files tunelab.experiments writes (this package
never imports it):
  continual root: matrix.json (R[stage][task], ACC / BWT / FWT, each BWT term's paired test) and
                  matrix.png (the heatmap); over training seeds matrix_over_seeds.json (its cells'
                  means, build.collect puts them in matrix.json's shape, with the seeds' SDs);
  study folder:   search.json (summary, best trials), trials.json (one row per trial), search.png.
"""

from __future__ import annotations

import html
import json

from tunelab.report.text import fmt as _fmt


def _signed(x) -> str:
    return "n/a" if x is None else f"{x:+.4f}"


def _matrix_rows(m: dict) -> tuple[list[str], list[list[str]]]:
    header = ["stage"] + m["tasks"]
    rows = [[stage] + [_fmt(v) for v in values] for stage, values in zip(m["stages"], m["scores"])]
    return header, rows


def _summary_line(m: dict) -> str:
    s = m["summary"]
    parts = [f"ACC {_fmt(s.get('ACC'))}", f"BWT {_signed(s.get('BWT'))}", f"FWT {_signed(s.get('FWT'))}"]
    if s.get("held_out_change") is not None:
        held = ", ".join(f"{t} {_signed(v)}" for t, v in s.get("per_task_held_out_change", {}).items())
        parts.append(f"held-out change {_signed(s['held_out_change'])} ({held})")
    return "; ".join(parts)


def _seed_line(m: dict) -> str | None:
    """Over training seeds: ACC / BWT / FWT per seed and whether each one's sign holds in every seed."""
    seeds = m.get("seed_summary")
    if not seeds:
        return None
    return "; ".join(f"{k} per seed {', '.join(_signed(v) for v in s['per_seed'])} "
                     f"({'same sign in every seed' if s['holds_in_every_seed'] else 'sign differs between seeds'})"
                     for k, s in seeds.items())


def _backward_lines(m: dict) -> list[str]:
    """Each BWT term as its paired test: the task after the last stage vs after the stage that learned it."""
    from tunelab.evaluate.comparison import mde_text
    from tunelab.metrics.stats import p_clause

    return [f"{task}: after stage {t['stage_last']} vs after stage {t['stage_learned']} ({t['metric']}): "
            f"{t['diff']:+.4f} [{t['ci'][0]:+.4f}, {t['ci'][1]:+.4f}] ({p_clause(t['p_value'])}, {t['test']}; "
            f"n = {t['n']}; could see {mde_text(t)})" for task, t in (m.get("backward_tests") or {}).items()]


def _trial_columns(trials: list[dict]) -> list[str]:
    cols: list[str] = []
    for row in trials:
        cols += [k for k in row if k not in cols and k not in ("datetime_start", "datetime_complete")]
    return cols


def continual_html(c: dict) -> list[str]:
    e = html.escape
    out = ["<h2 id='matrix'>Task x stage matrix</h2>",
           "<p>R[stage][task]: each task scored after each stage (row 0 is the base model). "
           "ACC, BWT and FWT as in Lopez-Paz &amp; Ranzato (2017), unnormalised; BWT &lt; 0 means forgetting.</p>"]
    if c["heatmap"]:
        out.append(f"<img id='plot-matrix' alt='task x stage heatmap' src='data:image/png;base64,{c['heatmap']}'>")
    learned = c["matrix"].get("learned_at", {})
    for key, m in c["matrix"]["matrices"].items():
        header, rows = _matrix_rows(m)
        out.append(f"<h3>{e(m.get('metric', key))}</h3><table class='matrix' id='matrix-{e(key)}'><tr>"
                   + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>" for row in rows]
        out.append(f"</table><p>{e(_summary_line(m))}</p>")
        seed_line = _seed_line(m)
        if seed_line:
            out.append(f"<p class='seeds'>{e(seed_line)}</p>")
        backward = _backward_lines(m)
        if backward:
            out.append("<ul class='backward'>" + "".join(f"<li>{e(x)}</li>" for x in backward) + "</ul>")
    if learned:
        out.append("<p><small>learned at stage: " + e(", ".join(f"{t} {s}" for t, s in learned.items()))
                   + "</small></p>")
    return out


def search_html(s: dict) -> list[str]:
    e = html.escape
    sm = s["summary"]
    out = ["<h2 id='search'>Hyperparameter search</h2>",
           f"<p>Study <b>{e(str(sm['study_name']))}</b>: {sm['n_finished']} of {sm['n_trials']} trials finished; "
           f"objective {e(sm['metric'])} ({e(sm['direction'])})"
           + (" and forgetting (minimised): the best trials are the Pareto front" if sm.get("forgetting_objective") else "")
           + ".</p>"]
    for t in sm.get("best_trials", []):
        out.append(f"<p class='best'>Best trial {t['number']}: values {e(json.dumps(t['values']))}, "
                   f"params {e(json.dumps(t['params']))}</p>")
    if s["plot"]:
        out.append(f"<img id='plot-search' alt='search history and parameters' src='data:image/png;base64,{s['plot']}'>")
    cols = _trial_columns(s["trials"])
    if cols:
        out.append("<table id='trials-table'><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
        out += ["<tr>" + "".join(f"<td>{e(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in s["trials"]]
        out.append("</table>")
    return out


def continual_md(c: dict) -> list[str]:
    lines = ["## Task x stage matrix", ""]
    for key, m in c["matrix"]["matrices"].items():
        header, rows = _matrix_rows(m)
        lines += [f"### {m.get('metric', key)}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += ["", _summary_line(m), ""]
        seed_line = _seed_line(m)
        lines += [seed_line, ""] if seed_line else []
        lines += [f"- {x}" for x in _backward_lines(m)] + ([""] if m.get("backward_tests") else [])
    return lines


def search_md(s: dict) -> list[str]:
    sm = s["summary"]
    lines = ["## Hyperparameter search", "",
             f"Study {sm['study_name']}: {sm['n_finished']} of {sm['n_trials']} trials finished; "
             f"objective {sm['metric']} ({sm['direction']}).", ""]
    lines += [f"- best trial {t['number']}: values {t['values']}, params {t['params']}" for t in sm.get("best_trials", [])]
    cols = _trial_columns(s["trials"])
    if cols:
        lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in s["trials"]]
    return lines + [""]
