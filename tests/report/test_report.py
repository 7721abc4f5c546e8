"""report.html / report.md from a run folder, checked in a real headless Chromium."""

from __future__ import annotations

import json
import re

from browser_check import render_and_check

from tunelab.report import write_report


def test_report_files_and_content(synthetic_run):
    html_path, md_path = write_report(synthetic_run)
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == 3  # loss, metrics, forgetting: inline, self-contained
    assert "src='http" not in html and "<link" not in html  # nothing fetched from elsewhere
    # user text is escaped, never injected as markup
    assert "base answer 0 &lt;b&gt;&amp;amp;&lt;/b&gt;" in html
    forgetting = json.loads((synthetic_run / "forgetting" / "forgetting.json").read_text())
    gain = forgetting["summary"]["gain"]
    assert f"{gain['diff']:+.4f}" in html
    md = md_path.read_text()
    assert "| sst2 (tuned task) | accuracy |" in md
    for name in ("loss", "forgetting"):
        png = synthetic_run / "report_files" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"report_files/{name}.png" in md


def test_report_renders_in_chromium(synthetic_run, tmp_path):
    html_path, _ = write_report(synthetic_run)
    text = render_and_check(html_path, tmp_path,
                            ["Run and cost", "Loss curves", "Metrics", "Forgetting: base vs tuned",
                             "Example predictions before vs after"],
                            {"plot-loss", "plot-metrics", "plot-forgetting"})
    for table in ("cost-table", "metrics-table", "forgetting-table", "examples-table"):
        assert f'id="{table}"' in text
    assert len(re.findall(r"<tr>", text.split('id="forgetting-table"')[1].split("</table>")[0])) == 4  # head + 3 tasks


def test_report_on_a_folder_with_nothing_to_report_is_one_error_line(tmp_path, capsys):
    from tunelab.cli.main import main

    rc = main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()][-1].startswith(f"tunelab: error: {tmp_path}: nothing to report")
    assert not (tmp_path / "report.html").exists()  # no page with only a title
