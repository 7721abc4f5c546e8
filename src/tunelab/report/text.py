"""Number formatting shared by the report's HTML and Markdown writers."""

from __future__ import annotations


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
