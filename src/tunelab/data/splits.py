"""Seeded train/validation/test splits, identical on every process and machine.

Order comes from SHA-256 of (seed, salt, index) rather than Python's hash() (salted per process)
or a library RNG (whose streams may change between versions): the same seed gives byte-identical
splits everywhere, forever. Classification tasks are stratified: every label's count in every
split is within one example of its exact share.
"""

from __future__ import annotations

import hashlib
import math


def stable_key(*parts) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


def stable_permutation(n: int, *salt) -> list[int]:
    """A permutation of range(n) fixed by `salt` (seed, task name, ...)."""
    return sorted(range(n), key=lambda i: stable_key(*salt, i))


def normalise(ratios: dict[str, float]) -> dict[str, float]:
    total = sum(ratios.values())
    if total <= 0:
        raise ValueError("split ratios must not all be zero")
    return {name: value / total for name, value in ratios.items()}


def largest_remainder(n: int, ratios: dict[str, float]) -> dict[str, int]:
    """Integer counts summing to n, each the floor or ceiling of n * ratio."""
    exact = {k: n * r for k, r in normalise(ratios).items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    order = sorted(exact, key=lambda k: (-(exact[k] - counts[k]), list(exact).index(k)))
    for k in order[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def stratified_counts(strata_sizes: dict[str, int], ratios: dict[str, float]) -> dict[str, dict[str, int]]:
    """Per stratum and split: floor or ceiling of size * ratio, rows summing to the stratum size,
    and the extra units placed where the split totals need them (controlled rounding)."""
    ratios = normalise(ratios)
    total = sum(strata_sizes.values())
    exact_totals = {k: total * r for k, r in ratios.items()}
    counts = {s: {k: math.floor(n * r) for k, r in ratios.items()} for s, n in strata_sizes.items()}
    assigned = {k: sum(counts[s][k] for s in counts) for k in ratios}
    # Strata with the fewest places to put their extra units go first.
    def fractions(s):
        return {k: strata_sizes[s] * r - counts[s][k] for k, r in ratios.items()}

    order = sorted(strata_sizes, key=lambda s: (sum(f > 1e-12 for f in fractions(s).values()), s))
    for s in order:
        left = strata_sizes[s] - sum(counts[s].values())
        frac = fractions(s)
        candidates = [k for k in ratios if frac[k] > 1e-12]
        candidates.sort(key=lambda k: (-(exact_totals[k] - assigned[k]), -frac[k], list(ratios).index(k)))
        for k in candidates[:left]:
            counts[s][k] += 1
            assigned[k] += 1
    return counts


def split_indices(n: int, ratios: dict[str, float], seed: int, salt: str,
                  strata: list[str] | None = None) -> dict[str, list[int]]:
    """Indices 0..n-1 divided among the splits in `ratios`; each split's list in source order."""
    ratios = {k: v for k, v in ratios.items()}
    groups: dict[str, list[int]] = {}
    for i in range(n):
        groups.setdefault(strata[i] if strata is not None else "", []).append(i)
    if strata is None:
        per_group = {"": largest_remainder(n, ratios)}
    else:
        per_group = stratified_counts({g: len(ix) for g, ix in groups.items()}, ratios)
    out: dict[str, list[int]] = {k: [] for k in ratios}
    for group in sorted(groups):
        members = groups[group]
        order = [members[j] for j in stable_permutation(len(members), seed, salt, group)]
        start = 0
        for k in ratios:
            take = per_group[group][k]
            out[k].extend(order[start:start + take])
            start += take
    return {k: sorted(v) for k, v in out.items()}
