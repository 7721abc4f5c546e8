"""report.html / report.md from a run folder, checked in a real headless Chromium: every number in
its tables and every CI in its figures against forgetting.json and results.json."""

from __future__ import annotations

import json
import re

from browser_check import render_and_check
from json_check import check_examples_table, check_forgetting_page, check_metrics
from page_check import read_page

from tunelab.report import write_report


def test_report_files_and_content(synthetic_run):
    html_path, md_path = write_report(synthetic_run)
    html = html_path.read_text()
    # loss, metrics, forgetting, base/tuned scores: inline SVG, self-contained
    assert html.count("<figure class='plot'") == 4 and html.count("<svg ") == 4
    assert "src='http" not in html and "<link" not in html and "xlink:href=\"http" not in html
    # user text is escaped, never injected as markup
    assert "base answer 0 &lt;b&gt;&amp;amp;&lt;/b&gt;" in html
    forgetting = json.loads((synthetic_run / "forgetting" / "forgetting.json").read_text())
    gain = forgetting["summary"]["gain"]
    assert f"{gain['diff']:+.4f}" in html
    md = md_path.read_text()
    assert "| sst2 (tuned task) | accuracy |" in md
    for name in ("loss", "metrics", "forgetting", "forgetting-scores"):
        png = synthetic_run / "report_files" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"report_files/{name}.png" in md


def test_report_renders_in_chromium(synthetic_run, tmp_path):
    html_path, _ = write_report(synthetic_run)
    text = render_and_check(html_path, tmp_path,
                            ["Run and cost", "Loss curves", "Metrics", "Forgetting: base vs tuned",
                             "Example predictions before vs after"],
                            {"plot-loss", "plot-metrics", "plot-forgetting", "plot-forgetting-scores"})
    for table in ("cost-table", "metrics-table", "forgetting-table", "examples-table"):
        assert f'id="{table}"' in text
    assert len(re.findall(r"<tr>", text.split('id="forgetting-table"')[1].split("</table>")[0])) == 4  # head + 3 tasks


def test_every_number_and_ci_on_the_page_is_the_json(synthetic_run, tmp_path):
    html_path, _ = write_report(synthetic_run)
    page = read_page(html_path, tmp_path)
    forgetting = json.loads((synthetic_run / "forgetting" / "forgetting.json").read_text())
    assert check_forgetting_page(page, forgetting) == 3 * 3  # per task: the paired CI, base's and tuned's
    assert check_examples_table(page, forgetting, synthetic_run / "forgetting") == 3 * 3
    results = json.loads((synthetic_run / "forgetting" / "tuned" / "results.json").read_text())
    assert check_metrics(page, results) == 3
    header, rows = page["tables"]["forgetting-table"][0], page["tables"]["forgetting-table"][1:]
    sst2 = dict(zip(header, rows[0]))
    # 0/1 scores: the exact McNemar test, named beside its p, and what it could detect in points
    assert "(exact McNemar)" in sst2["test, p"] and sst2["could detect (80% power)"].endswith(" points")


def test_a_forgetting_file_without_the_new_fields_still_renders_its_cis_and_scores(synthetic_run, tmp_path):
    """The user's report: paired_on a sentence, no score_key: the bars still get their CIs and the
    per-example scores are numbers."""
    path = synthetic_run / "forgetting" / "forgetting.json"
    old = json.loads(path.read_text())
    for row in old["tasks"]:
        for key in ("score_key", "mde", "improvement_ci", "test"):
            row.pop(key, None)
        row["paired_on"] = f"per-example {row['metric']}"
    path.write_text(json.dumps(old))
    html_path, _ = write_report(synthetic_run)
    page = read_page(html_path, tmp_path)
    assert check_forgetting_page(page, old) == 9
    assert check_examples_table(page, old, path.parent) == 9
    assert "could detect (80% power)" not in page["tables"]["forgetting-table"][0]


def test_report_on_a_folder_with_nothing_to_report_is_one_error_line(tmp_path, capsys):
    from tunelab.cli.main import main

    rc = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert last.startswith(f"tunelab: error: {tmp_path}: nothing to report")
    assert not (tmp_path / "report.html").exists()  # no page with only a title


def test_an_unbounded_scale_says_its_own_direction():
    """Unbounded metrics are drawn on their own axis titled with their direction: the vocabulary's
    (reward_margin: higher is better, token_nll: lower), lower for a name it does not know (an
    lm-eval metric is unbounded only when its entry says lower is better)."""
    from tunelab.config.scoring import scale_of
    from tunelab.report.text import scale_title

    assert scale_title(scale_of("reward_margin")) == "reward_margin (higher is better)"
    assert scale_title(scale_of("token_nll")) == "token_nll (lower is better)"
    assert scale_title(scale_of("word_perplexity", {"higher_is_better": False})) == "word_perplexity (lower is better)"
    assert scale_title(scale_of("accuracy")) == "0-1 scale"
