"""A rendered report against the JSON it was written from: every number in its tables, every CI
and bar in its figures (read back by page_check.read_page). The expectations are written from the
data contract (forgetting.json, compare.json), not from the report's own formatting code."""

from __future__ import annotations

import json
import re
from pathlib import Path

from page_check import (assert_bar_drawn, assert_ci_drawn, assert_points_drawn, check_p, close, number, numbers,
                        table)


def scale(metric: str, entry: dict) -> str:
    """The panel a metric must be drawn in: 0-100 (BLEU, chrF), its own for a loss or an unbounded
    score (reward_margin, nats), else 0-1."""
    if entry.get("scale") == "0-100" or metric in ("bleu", "chrf"):
        return "0-100"
    if entry.get("higher_is_better") is False or metric in ("token_nll", "perplexity", "bits_per_byte", "reward_margin"):
        return metric
    return "0-1"


def mde_shown(mde: float, metric: str, entry: dict) -> tuple[float, int]:
    """(number, decimals) the MDE is shown as: percentage points for a 0-1 metric, else its units."""
    s = scale(metric, entry)
    return (100 * mde, 1) if s == "0-1" else (mde, 2) if s == "0-100" else (mde, 4)


def assert_numbers(text: str, expected: list[tuple[float, int]]) -> None:
    """The cell's numbers, in order, are exactly `expected` ((value, decimals) each), rounded."""
    got = numbers(text)
    assert len(got) == len(expected), (text, expected)
    for g, (value, decimals) in zip(got, expected):
        assert close(g, value, decimals), (text, g, value)


def strip_p(text: str, d: dict) -> str:
    """Check the p beside its test's name, then drop that clause (its number is not a 4-decimal one)."""
    check_p(text, d["p_value"], d.get("test"))
    clause = r"p (?:<|=) [\d.e+-]+" + (r" \(" + re.escape(d["test"]) + r"\)" if d.get("test") else "")
    return re.sub(clause, "", text, count=1)


def diff_numbers(d: dict, metric: str) -> list[tuple[float, int]]:
    """diff [lo, hi] and, when the JSON has one, the MDE."""
    out = [(d["diff"], 4), (d["ci"][0], 4), (d["ci"][1], 4)]
    if d.get("mde") is not None:
        out.append(mde_shown(d["mde"], metric, d))
    return out


def check_marks(page: dict, key: str, name: str, value: float, ci: list | None, panel: str) -> None:
    """bar/<key>/<name> from 0 to value, ci/<key>/<name> at its bounds, on its bar's row, in `panel`."""
    assert_bar_drawn(page, f"bar/{key}/{name}", value)
    assert page["marks"][f"bar/{key}/{name}"]["axes"] == panel, (name, page["marks"][f"bar/{key}/{name}"]["axes"])
    if ci is None:
        return
    assert_ci_drawn(page, f"ci/{key}/{name}", ci)
    bar, whisker = page["marks"][f"bar/{key}/{name}"], page["marks"][f"ci/{key}/{name}"]
    assert whisker["axes"] == panel
    assert abs((bar["top"] + bar["bottom"]) / 2 - (whisker["top"] + whisker["bottom"]) / 2) < 1.0, name


def check_forgetting_page(page: dict, f: dict) -> int:
    """forgetting-table and the two forgetting figures against forgetting.json; returns the number
    of CIs checked in the figures."""
    header, rows = table(page, "forgetting-table")
    assert len(rows) == len(f["tasks"])
    drawn = 0
    for cells, r in zip(rows, f["tasks"]):
        cell = dict(zip(header, cells))
        assert cell["task"] == r["task"]
        assert cell["metric"] == r["metric"] + (" (0-100 scale)" if scale(r["metric"], r) == "0-100" else "")
        assert numbers(cell["n"]) == [r["n"]]
        for side in ("base", "tuned"):
            v = r[side]
            assert_numbers(cell[f"{side} [95% CI]"], [(v["value"], 4)] + [(x, 4) for x in v.get("ci") or []])
        assert_numbers(cell["diff (tuned - base)"], [(r["diff"], 4)])
        assert_numbers(cell["95% CI (paired)"], [(r["ci"][0], 4), (r["ci"][1], 4)])
        assert_numbers(strip_p(cell["test, p"], r), [])
        if "mde" in r:
            shown = cell["could detect (80% power)"]
            assert_numbers(shown, [mde_shown(r["mde"], r["metric"], r)] if r["mde"] is not None else [])
            if r["mde"] is not None and scale(r["metric"], r) == "0-1":
                assert shown.endswith(" points"), shown
        panel = scale(r["metric"], r)
        check_marks(page, "forgetting", r["task"], r["diff"], r["ci"], f"axes/forgetting/{panel}")
        drawn += 1
        for side in ("base", "tuned"):
            check_marks(page, "forgetting-scores", f"{r['task']}/{side}", r[side]["value"], r[side].get("ci"),
                        f"axes/forgetting-scores/{panel}")
            drawn += bool(r[side].get("ci"))
    return drawn


def check_examples_table(page: dict, f: dict, folder: Path | None = None) -> int:
    """Every before/after per-example score is the examples.jsonl score named by score_key.
    `folder`: forgetting.json's own, which its relative base_dir/tuned_dir are relative to."""
    header, rows = table(page, "examples-table")
    by_task = {r["task"]: r for r in f["tasks"]}
    folder_of_json = folder or Path.cwd()
    for cells in rows:
        cell = dict(zip(header, cells))
        task, key = cell["task"].split("\n")
        r = by_task[task]
        score_key = r.get("score_key") or r["metric"]
        for side, folder in (("before", f["base_dir"]), ("after", f["tuned_dir"])):
            lines = Path(folder_of_json, folder, f"{task}.examples.jsonl").read_text().splitlines()
            example = next(e for e in map(json.loads, lines) if e["key"] == key)
            shown = cell[side].split("\n")[-1]  # the score under the prediction (which may be blank)
            assert shown.startswith(f"{score_key}=") and "n/a" not in shown, shown
            assert close(number(shown.split("=", 1)[1]), example["scores"][score_key], 3), (shown, example["scores"])
    return len(rows)


def check_metrics(page: dict, results: dict) -> int:
    """metrics-table and the metrics figure against results.json; returns the CIs checked."""
    header, rows = table(page, "metrics-table")
    expected = [(t, m, e) for t, res in results["tasks"].items() for m, e in res["metrics"].items() if e.get("ci")]
    assert len(rows) == len(expected)
    for cells, (task, metric, e) in zip(rows, expected):
        assert cells[:2] == [task, metric]
        assert_numbers(" ".join(cells[2:]), [(e["value"], 4), (e["ci"][0], 4), (e["ci"][1], 4), (e["n"], 0)])
        check_marks(page, "metrics", f"{task}/{metric}", e["value"], e["ci"], f"axes/metrics/{scale(metric, e)}")
    return len(expected)


def value_numbers(v: dict) -> list[tuple[float, int]]:
    out = [(v["value"], 4)] + [(x, 4) for x in v.get("ci") or []]
    out += [(x, 4) for x in v.get("per_seed") or []]
    if isinstance(v.get("seed_sd"), float):
        out.append((v["seed_sd"], 4))
    return out


def check_test_text(text: str, t: dict, metric: str) -> None:
    """"Δ diff [lo, hi], p = X (test); could detect ≥ M points; holds in every seed: yes"."""
    assert_numbers(strip_p(text, t), diff_numbers(t, metric))
    if t.get("holds_in_every_seed") is not None:
        assert f"holds in every seed: {'yes' if t['holds_in_every_seed'] else 'no'}" in text, text


def check_systems_tables(page: dict, cmp: dict) -> int:
    """per-task-table, trade-off-table and costs-table against compare.json; returns the cells checked."""
    labels = cmp.get("labels") or cmp["runs"]
    header, rows = table(page, "per-task-table")
    assert header == ["task", "metric", *labels] and len(rows) == len(cmp["rows"])
    checked = 0
    for cells, row in zip(rows, cmp["rows"]):
        assert cells[0] == row["task"] and cells[1] == row["metric"] + (" *" if row["primary"] else "")
        for text, v, t in zip(cells[2:], row["values"], row["tests"]):
            value_part, _, test_part = text.partition("\n")
            if v is None:
                assert value_part == "n/a"
            else:
                assert_numbers(value_part, value_numbers(v))
            if t is None:
                assert test_part == "", text
            else:
                assert test_part.startswith("Δ ")
                check_test_text(test_part, t, row["metric"])
            checked += 1
    if cmp.get("trade_off"):
        _, rows = table(page, "trade-off-table")
        expected = [(p, j, o) for p in cmp["trade_off"] for j, o in enumerate(p["others"] or [None])]
        assert len(rows) == len(expected)
        for cells, (p, j, o) in zip(rows, expected):
            if j == 0:
                assert cells[0] == p["label"]
                tuned = p.get("tuned_task") or cmp.get("tuned_task")
                assert cells[1] == (f"{tuned} ({p['gain']['metric']})" if p["gain"] else tuned or "n/a"), cells
                check_test_text(cells[2], p["gain"], p["gain"]["metric"])
            else:
                assert cells[:3] == ["", "", ""], cells
            if o is not None:
                assert cells[3] == f"{o['task']} ({o['metric']})"
                check_test_text(cells[4], o, o["metric"])
                assert cells[5] == ("no" if o["held_out"] else "yes")
            checked += 1
    if cmp.get("continued"):
        _, rows = table(page, "continued-table")
        expected = [(c, j, t) for c in cmp["continued"] for j, t in enumerate(c["tests"])]
        assert len(rows) == len(expected)
        for cells, (c, j, t) in zip(rows, expected):
            assert cells[:2] == ([c["label"], c["after_label"]] if j == 0 else ["", ""])
            assert cells[2] == f"{t['task']} ({t['metric']})"
            check_test_text(cells[3], t, t["metric"])
            checked += 1
    header, rows = table(page, "costs-table")
    for cells, cost in zip(rows, cmp["costs"]):
        for name, text in zip(header[1:], cells[1:]):
            key = {"wall time (s)": "wall_s", "training steps (s)": "train_s", "training tokens": "train_tokens",
                   "trainable parameters":
                   "trainable_params", "peak memory (RSS, MB)": "peak_rss_mb"}.get(name, name)
            value = cost.get(key)
            assert text == "n/a" if value is None else (text == value if isinstance(value, str)
                                                        else close(number(text), value, 1)), (name, text, value)
    return checked


def check_bar_and_seeds(page: dict, figure: str, name: str, value: float, ci: list, per_seed: list | None,
                        axes: str) -> int:
    """One bar with its CI whisker, and each seed's point beside it; returns 1 (one CI checked)."""
    check_marks(page, figure, name, value, ci, axes)
    if per_seed:
        assert_points_drawn(page, f"seed/{figure}/{name}", per_seed)
    return 1


def check_systems_figures(page: dict, cmp: dict) -> int:
    """Every values[i] CI and every tests[i] CI of every row, each seed's value and difference,
    the trade-off's gain CIs and seed points, second stages' CIs; returns the number of CIs checked."""
    drawn = 0
    for row in cmp["rows"]:
        task, metric = row["task"], row["metric"]
        for i, v in enumerate(row["values"]):
            if v is not None and v.get("ci"):
                drawn += check_bar_and_seeds(page, "systems", f"{task}/{metric}/{i}", v["value"], v["ci"],
                                             v.get("per_seed"), f"axes/systems/{task}/{metric}")
        for i, t in enumerate(row["tests"]):
            if t is not None:
                drawn += check_bar_and_seeds(page, "systems-diffs", f"{task}/{metric}/{i}", t["diff"], t["ci"],
                                             t.get("per_seed_diffs"), f"axes/systems-diffs/{scale(metric, t)}")
    for i, p in enumerate(cmp.get("trade_off") or []):
        if not p["gain"] or p["change"] is None:
            continue
        assert_ci_drawn(page, f"ci/trade_off/{i}/gain", p["gain"]["ci"], vertical=True)
        assert_points_drawn(page, f"point/trade_off/{i}", [p["change"]], [p["gain"]["diff"]])
        drawn += 1
        one = [o for o in p["others"] if o["task"] in p["change_tasks"]] if len(p["change_tasks"]) == 1 else []
        if one:  # the change is one task's: its paired CI is drawn across the point
            assert_ci_drawn(page, f"ci/trade_off/{i}/change", one[0]["ci"])
            drawn += 1
        else:
            assert f"ci/trade_off/{i}/change" not in page["marks"]
        seeds = [s for s in p.get("per_seed") or [] if s.get("change") is not None]
        if seeds:
            assert_points_drawn(page, f"seed/trade_off/{i}", [s["change"] for s in seeds], [s["gain"] for s in seeds])
    drawn += check_interpolation_curves(page, cmp)
    for k, c in enumerate(cmp.get("continued") or []):
        for t in c["tests"]:
            check_marks(page, "continued", f"{k}/{t['task']}", t["diff"], t["ci"],
                        f"axes/continued/{scale(t['metric'], t)}")
            drawn += 1
    return drawn


def check_interpolation_curves(page: dict, cmp: dict) -> int:
    """Each interpolated system's curve passes through the origin (the reference), its alphas'
    points in alpha order and the system's own point; returns the number of curves checked."""
    points = [p for p in cmp.get("trade_off") or [] if p["gain"] and p["change"] is not None]
    curves: dict[str, list] = {}
    for p in points:
        if p.get("alpha") is not None:
            curves.setdefault(p.get("interpolation_of") or "", []).append((p["alpha"], p["change"], p["gain"]["diff"]))
    for p in points:
        if p["system"] in curves:
            curves[p["system"]].append((1.0, p["change"], p["gain"]["diff"]))
    for g, vertices in enumerate(curves.values()):
        xy = [(0.0, 0.0)] + [(x, y) for _, x, y in sorted(vertices)]
        assert_points_drawn(page, f"curve/trade_off/interpolation/{g}", [x for x, _ in xy], [y for _, y in xy])
    return len(curves)
