"""The several-systems report (compare.json), no model needed: the Pareto front, and the page
against its JSON in Chromium."""

import json

from browser_check import render_and_check
from json_check import check_systems_figures, check_systems_tables
from page_check import read_page

from tunelab.report import write_report
from tunelab.report.trade_off import pareto_front


def test_pareto_front_keeps_the_points_no_other_beats_on_both():
    # (change on held-out tasks, gain on the tuned task): higher is better on both
    points = [(0.0, 0.30), (-0.10, 0.40), (-0.05, 0.20), (-0.20, 0.40), (0.02, 0.10)]
    assert pareto_front(points) == [0, 1, 4]  # (-0.05, 0.20) loses to (0.0, 0.30); (-0.20, 0.40) to (-0.10, 0.40)


def test_systems_page_equals_compare_json(systems_folder, tmp_path):
    """A comparison with BLEU (0-100), accuracy and ROUGE (0-1) and losses, one system over three
    training seeds, one second stage: every number in the tables and every CI in compare.json drawn
    at its bounds, each seed's value and difference as a dot, and no panel mixing scales."""
    html_path, md_path = write_report(systems_folder)
    render_and_check(html_path, tmp_path, ["Systems side by side", "Learning vs forgetting", "Second stages",
                                           "Per task", "Costs"],
                     {"plot-systems", "plot-systems-diffs", "plot-trade-off", "plot-continued"})
    cmp = json.loads((systems_folder / "compare.json").read_text())
    page = read_page(html_path, tmp_path)
    rows = len(cmp["rows"])
    assert rows == 6  # summary: bleu, rougeL; topic: accuracy, macro_f1; text: token_nll, perplexity
    assert [c["label"] for c in cmp["continued"]] == ["full-then-more"]
    stages = len(cmp["continued"][0]["tests"])  # each task's primary metric
    assert check_systems_tables(page, cmp) == rows * 4 + sum(len(p["others"]) for p in cmp["trade_off"]) + stages
    # each trade-off point's gain CI, and its change CI: the change is topic's accuracy alone (text's
    # loss is never averaged in), so its paired CI is drawn across the point
    assert all(p["change_tasks"] == ["topic"] for p in cmp["trade_off"])
    assert check_systems_figures(page, cmp) == rows * 4 + rows * 3 + 2 * len(cmp["trade_off"]) + stages
    # the seeds reached the page: lora's three seeds, in the table and as dots
    assert len(cmp["rows"][0]["values"][1]["per_seed"]) == 3 and "seed/trade_off/0" in page["marks"]
    # BLEU's and accuracy's differences are drawn on separate axes, each loss on its own
    panels = {m["axes"] for gid, m in page["marks"].items() if gid.startswith("ci/systems-diffs/")}
    assert panels == {"axes/systems-diffs/0-1", "axes/systems-diffs/0-100", "axes/systems-diffs/token_nll",
                      "axes/systems-diffs/perplexity"}
    assert "report_files/systems-diffs.png" in md_path.read_text()


def test_compare_says_when_it_pairs_fewer_examples_than_were_scored(tmp_path, write_system, capsys):
    """A tuned run scored on 20 of the base's 30 examples: every test pairs the 20, and compare says
    so on stderr, in compare.json, compare.md and the page; --bootstrap without --task still sets
    the resamples of the bootstrap tests (BLEU's)."""
    from tunelab.cli.main import main

    write_system(tmp_path / "base", 0.3, 3.0, None)
    write_system(tmp_path / "tuned", 0.7, 3.2, 0, n=20)
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "base"), str(tmp_path / "tuned"), "--output", str(out),
                 "--bootstrap", "300"]) == 0
    cmp = json.loads((out / "compare.json").read_text())
    assert cmp["unpaired"] == [{"task": t, "paired": 20, "scored": {"base": [30], "tuned": [20]}}
                               for t in ("summary", "topic", "text")]
    err = capsys.readouterr().err
    assert "compare: summary: the tests pair the 20 examples every run scored; the runs scored base 30, tuned 20" in err
    assert all(t["n"] == 20 for r in cmp["rows"] for t in r["tests"][1:])
    bleu = next(r for r in cmp["rows"] if r["metric"] == "bleu")["tests"][1]
    assert bleu["test"].startswith("paired bootstrap") and bleu["n_resamples"] == 300
    assert "Paired on fewer examples than scored: topic: 20 that every run scored (base 30, tuned 20 scored)." in \
        (out / "compare.md").read_text()
    page = (out / "report.html").read_text()
    assert "id='unpaired-text'>text: the tests pair only the 20 examples every system scored (base 30, tuned 20" in page
    # the default tuned task: the one the tuned run trained on (its train_keys.json: summary)
    assert [p["tuned_task"] for p in cmp["trade_off"]] == ["summary"] and cmp["tuned_task"] == "summary"
