"""report.html / report.md from a run folder, checked in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tunelab.report import write_report

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--force-device-scale-factor=1",
                  "--hide-scrollbars"]
# Appended to a copy of the report: records, for every <img>, whether it decoded and where it is.
PROBE = """<script>
window.addEventListener('load', () => {
  for (const img of document.images) {
    const r = img.getBoundingClientRect();
    img.setAttribute('data-probe', JSON.stringify({w: img.naturalWidth, h: img.naturalHeight, complete: img.complete,
      left: r.left + window.scrollX, top: r.top + window.scrollY, width: r.width, height: r.height}));
  }
  document.body.setAttribute('data-probed', '1');
});
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (scripts/setup_browser.sh installs it)")
    return exe


def run_chromium(args, tmp_path):
    profile = tmp_path / "chromium-profile"  # fresh profile every run
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_files_and_content(synthetic_run):
    html_path, md_path = write_report(synthetic_run)
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == 3  # loss, metrics, forgetting: inline, self-contained
    assert "src='http" not in html and "<link" not in html  # nothing fetched from elsewhere
    # user text is escaped, never injected as markup
    assert "base answer 0 &lt;b&gt;&amp;amp;&lt;/b&gt;" in html
    forgetting = json.loads((synthetic_run / "retention" / "forgetting.json").read_text())
    gain = forgetting["summary"]["gain"]
    assert f"{gain['diff']:+.4f}" in html
    md = md_path.read_text()
    assert "| sst2 (tuned task) | accuracy |" in md
    for name in ("loss", "forgetting"):
        png = synthetic_run / "report_files" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"report_files/{name}.png" in md


def test_report_renders_in_chromium(synthetic_run, tmp_path):
    html_path, _ = write_report(synthetic_run)
    probed = tmp_path / "probed.html"
    probed.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    dom = run_chromium(["--dump-dom", probed.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert 'data-probed="1"' in text
    for heading in ("Run and cost", "Loss curves", "Metrics", "Forgetting: base vs tuned",
                    "Example predictions before vs after"):
        assert re.search(rf"<h2[^>]*>{re.escape(heading)}</h2>", text), heading
    for table in ("cost-table", "metrics-table", "forgetting-table", "examples-table"):
        assert f'id="{table}"' in text
    assert len(re.findall(r"<tr>", text.split('id="forgetting-table"')[1].split("</table>")[0])) == 4  # head + 3 tasks
    probes = {m.group(1): json.loads(m.group(2).replace("&quot;", '"'))
              for m in re.finditer(r'<img id="([^"]+)"[^>]*data-probe="([^"]+)"', text)}
    assert set(probes) == {"plot-loss", "plot-metrics", "plot-forgetting"}
    for name, p in probes.items():
        assert p["complete"] and p["w"] > 200 and p["h"] > 100, (name, p)  # decoded, not a broken image

    shot = tmp_path / "shot.png"
    height = int(max(p["top"] + p["height"] for p in probes.values())) + 50
    res = run_chromium([f"--screenshot={shot}", f"--window-size=1100,{height}", probed.as_uri()], tmp_path)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[..., :3]
    assert pixels.shape[0] >= height - 5
    for name, p in probes.items():
        top, left = int(p["top"]), int(p["left"])
        region = pixels[top: top + int(p["height"]), left: left + int(p["width"])]
        assert region.size, name
        # a drawn plot: many non-white pixels and several distinct colours (bars, lines, text)
        non_white = (region < 0.9).any(axis=-1).mean()
        colours = len(np.unique((region * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        assert non_white > 0.02 and colours > 20, (name, non_white, colours)
    # and the page outside the plots is not the same picture: the screenshot is of the page
    assert (pixels < 0.9).any(axis=-1).mean() < 0.9


def test_report_on_empty_folder(tmp_path):
    html_path, md_path = write_report(tmp_path)
    assert "holds no summary" in html_path.read_text()
    assert md_path.exists()
