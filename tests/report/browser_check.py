"""Render an HTML file in Debian's headless Chromium and check it: the DOM and a screenshot."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--no-first-run", "--disable-component-update", "--disable-sync", "--force-device-scale-factor=1",
                  "--hide-scrollbars"]
# Appended to a copy of the report: records, for every <img> and every inline-SVG <figure>, whether
# it drew and where it is.
PROBE = """<script>
window.addEventListener('load', () => {
  for (const el of document.querySelectorAll('img, figure.plot')) {
    const r = el.getBoundingClientRect();
    const svg = el.tagName === 'IMG' ? null : el.querySelector('svg');
    const size = svg ? svg.getBoundingClientRect() : {width: el.naturalWidth, height: el.naturalHeight};
    el.setAttribute('data-probe', JSON.stringify({w: size.width, h: size.height, complete: svg ? true : el.complete,
      left: r.left + window.scrollX, top: r.top + window.scrollY, width: r.width, height: r.height}));
  }
  document.body.setAttribute('data-probed', '1');
});
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):  # `make test` installs it: in CI a skip would hide a broken setup
            pytest.fail("chromium not installed: run scripts/setup_browser.sh")
        pytest.skip("chromium not installed (scripts/setup_browser.sh installs it)")
    return exe


def run_chromium(args, tmp_path: Path):
    profile = tmp_path / "chromium-profile"  # a fresh profile every time
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def dump_dom(html_path: Path, tmp_path: Path, scripts: str, name: str = "probed.html",
             window: str = "1100,3000") -> str:
    """The DOM after load, of a copy of html_path with `scripts` appended to its body."""
    probed = tmp_path / name
    probed.write_text(html_path.read_text(encoding="utf-8").replace("</body>", scripts + "</body>"), encoding="utf-8")
    dom = run_chromium([f"--window-size={window}", "--dump-dom", probed.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


def probe_result(dom: str, element_id: str):
    """The JSON a probe script wrote as the text of <pre id=element_id>."""
    m = re.search(rf'<pre id="{element_id}">(.*?)</pre>', dom, re.S)
    assert m, f"{element_id}: the probe did not run"
    return json.loads(html.unescape(m.group(1)))


def render_and_check(html_path: Path, tmp_path: Path, headings: list[str], images: set[str]) -> str:
    """Dump the rendered DOM and a screenshot; assert headings, drawn figures (inline SVG or
    decoded images) and drawn plot regions. images: the ids of figures the page must have; every
    figure on it, these and any others, must have drawn."""
    text = dump_dom(html_path, tmp_path, PROBE)
    probed = tmp_path / "probed.html"
    assert 'data-probed="1"' in text
    for heading in headings:
        assert re.search(rf"<h2[^>]*>{re.escape(heading)}</h2>", text), heading
    probes = {m.group(2): json.loads(m.group(3).replace("&quot;", '"'))
              for m in re.finditer(r'<(img|figure) [^>]*?id="([^"]+)"[^>]*data-probe="([^"]+)"', text)}
    assert images <= set(probes), (images, set(probes))
    for name, p in probes.items():
        assert p["complete"] and p["w"] > 200 and p["h"] > 100, (name, p)  # drawn, not a broken image

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
    assert (pixels < 0.9).any(axis=-1).mean() < 0.9  # a page with text and whitespace, not one block
    return text
