"""Read a rendered report back from Chromium: its tables as the reader sees them (innerText) and
where each figure drew every bar, CI and seed point, in data units read off the panel's own tick
labels. Then the checks: every number in the tables equals its JSON source, and every CI in the
JSON is drawn with its bounds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from browser_check import dump_dom, probe_result

# Writes {"tables": {id: [[cell text]]}, "marks": {gid: {...}}, "axes": {gid: {"x": [[label, px]], "y": ...}},
# "duplicate_ids": [...]}
# into <pre id="page-probe">. Positions are viewport pixels (getBoundingClientRect: geometry, no stroke).
PAGE_PROBE = r"""<script>
window.addEventListener('load', () => {
  const centre = (el, axis) => { const r = el.getBoundingClientRect();
    return axis === 'x' ? r.left + r.width / 2 : r.top + r.height / 2; };
  const out = {tables: {}, marks: {}, axes: {}};
  for (const t of document.querySelectorAll('table[id]'))
    out.tables[t.id] = [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim()));
  for (const g of document.querySelectorAll('g[id^="ci/"], g[id^="bar/"], g[id^="seed/"], g[id^="point/"], g[id^="curve/"]')) {
    const r = g.getBoundingClientRect();
    const axes = g.closest('g[id^="axes/"]');
    out.marks[g.id] = {left: r.left, right: r.right, top: r.top, bottom: r.bottom, axes: axes ? axes.id : null,
      points: [...g.querySelectorAll('use')].map(u => [centre(u, 'x'), centre(u, 'y')])};
  }
  for (const a of document.querySelectorAll('g[id^="axes/"]')) {
    const ticks = axis => [...a.querySelectorAll(`g[id*="${axis}tick_"]`)].map(t => {
      const mark = t.querySelector('use'), label = t.querySelector('text');
      return mark && label ? [label.textContent, centre(mark, axis)] : null; }).filter(Boolean);
    out.axes[a.id] = {x: ticks('x'), y: ticks('y')};
  }
  const ids = [...document.querySelectorAll('[id]')].map(el => el.id);
  out.duplicate_ids = [...new Set(ids.filter((id, i) => ids.indexOf(id) !== i))];
  const pre = document.createElement('pre');
  pre.id = 'page-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def read_page(html_path: Path, tmp_path: Path) -> dict:
    page = probe_result(dump_dom(html_path, tmp_path, PAGE_PROBE, "page-probe.html"), "page-probe")
    # several inline figures on one page: matplotlib's ids must have been made unique per figure
    assert page["duplicate_ids"] == [], page["duplicate_ids"][:10]
    return page


def number(text: str) -> float:
    return float(text.replace("\u2212", "-").replace(",", ""))


def numbers(text: str) -> list[float]:
    """Every number in a cell's text, in order (a leading minus or plus kept)."""
    return [number(m) for m in re.findall(r"[-+\u2212]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?", text)]


class Axis:
    """Pixel <-> data along one axis of a panel, fitted to its tick marks and their labels."""

    def __init__(self, ticks: list):
        assert len(ticks) >= 2, f"a panel with fewer than two labelled ticks: {ticks}"
        values = np.array([number(label) for label, _ in ticks])
        px = np.array([p for _, p in ticks])
        self.slope, self.offset = np.polyfit(values, px, 1)
        # the ticks are evenly spaced: a straight line through them all, to a tenth of a pixel
        assert np.abs(values * self.slope + self.offset - px).max() < 0.1, ticks

    def data(self, px: float) -> float:
        return (px - self.offset) / self.slope

    def tolerance(self, pixels: float = 1.0) -> float:
        return abs(pixels / self.slope)


def drawn_span(page: dict, gid: str, vertical: bool = False) -> tuple[float, float, float]:
    """(low, high, tolerance) in data units of what the element `gid` spans along its panel's axis."""
    assert gid in page["marks"], f"{gid}: not drawn (ids drawn: {sorted(page['marks'])[:20]} ...)"
    mark = page["marks"][gid]
    axis = Axis(page["axes"][mark["axes"]]["y" if vertical else "x"])
    a, b = (mark["bottom"], mark["top"]) if vertical else (mark["left"], mark["right"])
    lo, hi = sorted((axis.data(a), axis.data(b)))
    return lo, hi, axis.tolerance()


def assert_ci_drawn(page: dict, gid: str, ci: list[float], vertical: bool = False) -> None:
    lo, hi, tol = drawn_span(page, gid, vertical)
    assert abs(lo - ci[0]) <= tol and abs(hi - ci[1]) <= tol, (gid, "drawn", (lo, hi), "json", ci, "tolerance", tol)


def assert_bar_drawn(page: dict, gid: str, value: float) -> None:
    """A bar spans from 0 to its value."""
    lo, hi, tol = drawn_span(page, gid)
    assert abs(lo - min(0.0, value)) <= tol and abs(hi - max(0.0, value)) <= tol, (gid, (lo, hi), value, tol)


def assert_points_drawn(page: dict, gid: str, xs: list[float], ys: list[float] | None = None) -> None:
    """One marker per value, at that value (ys: also check the vertical position)."""
    mark = page["marks"].get(gid)
    assert mark and len(mark["points"]) == len(xs), (gid, mark and mark["points"], xs)
    axes = page["axes"][mark["axes"]]
    x_axis = Axis(axes["x"])
    got = sorted(x_axis.data(p[0]) for p in mark["points"])
    assert np.allclose(got, sorted(xs), atol=x_axis.tolerance()), (gid, got, xs)
    if ys is not None:
        y_axis = Axis(axes["y"])
        got = sorted(y_axis.data(p[1]) for p in mark["points"])
        assert np.allclose(got, sorted(ys), atol=y_axis.tolerance()), (gid, got, ys)


def close(shown: float, value: float, decimals: int) -> bool:
    """A number printed with `decimals` decimals is the JSON value, rounded."""
    return abs(shown - value) <= 0.5 * 10 ** -decimals + 1e-12


def check_p(text: str, p: float, test: str | None) -> None:
    """"p = 0.0123 (exact McNemar)" or "p < 0.001 (...)": the JSON's p, beside its test's name."""
    if test:
        assert f"({test})" in text, (text, test)
    m = re.search(r"p (<|=) ([\d.e-]+)", text)
    assert m, text
    if m.group(1) == "<":
        assert m.group(2) == "0.001" and p < 0.001, (text, p)
    else:
        assert abs(float(m.group(2)) - p) <= 0.5 * 10 ** (np.floor(np.log10(p)) - 2) + 1e-15, (text, p)


def table(page: dict, table_id: str) -> tuple[list[str], list[list[str]]]:
    rows = page["tables"][table_id]
    return rows[0], rows[1:]
