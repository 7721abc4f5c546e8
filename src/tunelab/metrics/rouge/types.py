"""ROUGE type names: "rouge1".."rouge9", "rougeL", "rougeLsum", "rougeW-1.2", "rougeS4", "rougeS*",
"rougeSU4", "rougeSU*" (S/SU: maximum gap between the two words; * = unlimited)."""

from __future__ import annotations

import re
from typing import NamedTuple

_TYPE_RE = re.compile(r"rouge(?:(?P<n>[1-9])|(?P<l>Lsum|L)|W-(?P<w>\d+(?:\.\d+)?)|(?P<s>SU|S)(?P<d>\d+|\*))$")


class Score(NamedTuple):
    precision: float
    recall: float
    fmeasure: float


class RougeType(NamedTuple):
    name: str
    kind: str  # "N", "L", "Lsum", "W", "S"
    n: int = 0
    weight: float = 1.2
    gap: int = -1  # S/SU maximum gap, -1 = unlimited
    unigrams: bool = False  # SU


def parse_type(name: str) -> RougeType:
    m = _TYPE_RE.match(name)
    if not m:
        raise ValueError(
            f"invalid ROUGE type {name!r}; use rouge1..rouge9, rougeL, rougeLsum, rougeW-1.2, "
            "rougeS4, rougeS*, rougeSU4 or rougeSU*"
        )
    if m["n"]:
        return RougeType(name, "N", n=int(m["n"]))
    if m["l"]:
        return RougeType(name, m["l"])
    if m["w"]:
        weight = float(m["w"])
        if weight < 1:
            raise ValueError(f"ROUGE-W weight must be >= 1, got {name!r}")
        return RougeType(name, "W", weight=weight)
    gap = -1 if m["d"] == "*" else int(m["d"])
    return RougeType(name, "S", gap=gap, unigrams=m["s"] == "SU")


def to_records(arrays: dict, n: int) -> list:
    """{type name: (precision, recall, fmeasure) arrays} -> one {type name: Score} dict per record."""
    out = [{} for _ in range(n)]
    for name, (p, r, f) in arrays.items():
        for rec, triple in enumerate(zip(p.tolist(), r.tolist(), f.tolist())):
            out[rec][name] = Score(*triple)
    return out
