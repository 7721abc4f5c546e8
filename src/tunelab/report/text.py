"""Number formatting and scale titles shared by the report's HTML, Markdown and figures."""

from __future__ import annotations

from tunelab.metrics import vocabulary
from tunelab.metrics.stats import format_p_value


def fmt(x, digits: int = 4) -> str:
    """None -> "n/a", floats to `digits` decimals, integers with thousands separators, anything
    else as str()."""
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    return str(x)


def scale_title(scale: str) -> str:
    if scale == "0-1":
        return "0-1 scale"
    if scale == "0-100":
        return "0-100 scale"
    return f"{scale} ({direction(scale)})"


def direction(scale: str) -> str:
    """How to read an unbounded scale, which is one metric's own (config.scoring.scale_of): its
    direction in the vocabulary (reward_margin: higher); a name the vocabulary does not know is
    unbounded only because its entry said lower is better (lm-eval's)."""
    known = vocabulary.key(scale)
    return "higher is better" if known is not None and known.higher_is_better else "lower is better"


def p_with_test(d: dict) -> str:
    """"p = 0.0123 (exact McNemar)": a p-value always beside the name of the test that produced it."""
    p = format_p_value(d.get("p_value"))
    clause = f"p {p}" if p.startswith("<") else f"p = {p}"
    return f"{clause} ({d['test']})" if d.get("test") else clause
