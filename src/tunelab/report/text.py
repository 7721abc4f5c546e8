"""Number formatting shared by the report's HTML and Markdown writers."""

from __future__ import annotations


def fmt(x, digits: int = 4) -> str:
    """None -> "n/a", floats to `digits` decimals, anything else as str()."""
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)
