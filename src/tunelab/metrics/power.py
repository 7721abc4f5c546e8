"""Power and minimum detectable effect (MDE) of tunelab's paired tests: how large a change a
comparison of two systems on n examples can see, or how many examples a change of a given size needs.

0/1 metrics (accuracy, exact match) are tested with the exact McNemar test (McNemar 1947, in its
exact conditional form: given the m discordant pairs, b ~ Bin(m, 1/2) under no change):
b = #(A right, B wrong), c = #(A wrong, B right), m = b + c,
p = min(1, 2 min(P(X <= b), P(X >= b))) with X ~ Bin(m, 1/2), reject when p < alpha.
Its power is computed exactly, with no normal approximation. With discordance psi = p10 + p01 (the
share of examples the systems disagree on) and change diff = p10 - p01:

    M ~ Bin(n, psi),  b | M = m ~ Bin(m, (psi + diff) / (2 psi)),
    power = sum_m P(M = m) [P(b <= k_m | m) + P(b >= m - k_m | m)],

where k_m is the largest k with 2 P(X <= k) < alpha, X ~ Bin(m, 1/2) (the rejection region is
symmetric, so it is {b <= k_m} and {b >= m - k_m}; k_m = -1 when m is too small to reject). The sum
skips the m with P(M = m) < 1e-13 on either tail, so n = 10,000 costs a few milliseconds.
A change of d moves at least d of the examples, so the power at d uses psi' = max(psi, d).
Power grows with |diff| at fixed n (checked numerically in the tests), so the MDE is found by
bisection. In n it can dip where M barely varies (discordance near 1): n_for_mcnemar returns
the smallest n it finds whose power, and that of every n up to 2% above it, reaches the target.
For comparison, Connor's (1987) normal-approximation sample size:
n = (z_{1-alpha/2} sqrt(psi) + z_power sqrt(psi - diff^2))^2 / diff^2.

Continuous and corpus metrics are tested with a paired bootstrap, which for a mean behaves like a
z-test of the mean difference. The usual planning formula (Cohen 1988, ch. 2) gives
MDE = (z_{1-alpha/2} + z_power) se, with se the standard error of the paired difference
(sd(d_i) / sqrt(n) for a mean metric; the bootstrap standard deviation of the difference for a
corpus metric such as BLEU), and n = ceil(((z_{1-alpha/2} + z_power) sd / diff)^2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom, norm

from tunelab.metrics.errors import MetricInputError

_TAIL = 1e-13  # P(M = m) mass skipped on each side of Bin(n, psi)
MAX_N = 10**8  # beyond this the sums get slow; such plans are not run on one test set anyway
_WINDOW = 0.02  # n_for_mcnemar: the power must hold from n up to 2% above it
_WINDOW_POINTS = 100  # at most this many n checked in that window


def _check_alpha_power(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise MetricInputError(f"alpha must be between 0 and 1, got {alpha!r}")
    if not alpha < power < 1:
        raise MetricInputError(f"power must be between alpha ({alpha}) and 1, got {power!r}")


def _check_discordance(discordance: float) -> None:
    if not 0 < discordance <= 1:
        raise MetricInputError(f"discordance must be in (0, 1], got {discordance!r}")


def _z(alpha: float, power: float) -> float:
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def critical_counts(m: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """k_m per m: the largest k with 2 P(X <= k) < alpha, X ~ Bin(m, 1/2); -1 where none."""
    m = np.asarray(m)
    k = binom.ppf(alpha / 2, m, 0.5) - 1  # ppf: the smallest k with P(X <= k) >= alpha / 2
    # ppf searches in floating point; step once either way so that the strict "<" holds exactly
    k = np.where(binom.cdf(k + 1, m, 0.5) < alpha / 2, k + 1, k)
    k = np.where((k >= 0) & (binom.cdf(k, m, 0.5) >= alpha / 2), k - 1, k)
    return k.astype(np.int64)


def mcnemar_power(n: int, discordance: float, diff: float, alpha: float = 0.05) -> float:
    """Exact power of the exact two-sided McNemar test on n paired examples whose discordant-pair
    rate is `discordance` (p10 + p01) and whose paired difference is `diff` (p10 - p01)."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise MetricInputError(f"n must be a non-negative integer, got {n!r}")
    _check_discordance(discordance)
    if abs(diff) > discordance * (1 + 1e-12):
        raise MetricInputError(f"|diff| {abs(diff)} exceeds the discordance {discordance}: "
                               "a change of d moves at least d of the examples")
    if not 0 < alpha < 1:
        raise MetricInputError(f"alpha must be between 0 and 1, got {alpha!r}")
    if n == 0:
        return 0.0
    lo = int(binom.ppf(_TAIL, n, discordance))
    hi = int(binom.isf(_TAIL, n, discordance))
    m = np.arange(max(lo - 1, 0), min(hi + 1, n) + 1)
    weight = binom.pmf(m, n, discordance)
    k = critical_counts(m, alpha)
    q = min(1.0, max(0.0, (discordance + diff) / (2 * discordance)))  # P(b-type | discordant)
    reject = binom.cdf(k, m, q) + binom.sf(m - k - 1, m, q)  # {b <= k} and {b >= m - k}
    return float(min(1.0, weight @ reject))


def _power_at(n: int, discordance: float, d: float, alpha: float) -> float:
    return mcnemar_power(n, max(discordance, d), d, alpha)


def mde_mcnemar(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest change |p10 - p01| (a share of n, 0-1) that the exact McNemar test on n
    examples detects with the target power; None when even a change of 1 (every example) cannot."""
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_N:
        raise MetricInputError(f"n must be an integer in [1, {MAX_N}], got {n!r}")
    if not 0 <= discordance <= 1:  # 0 is fine here: a change of d is planned at discordance max(psi, d)
        raise MetricInputError(f"discordance must be in [0, 1], got {discordance!r}")
    _check_alpha_power(alpha, power)
    if _power_at(n, discordance, 1.0, alpha) < power:
        return None
    # power rises with d at fixed n, so bisect on a log scale from a change of a quarter example
    lo, hi = 0.25 / n, 1.0
    if _power_at(n, discordance, lo, alpha) >= power:
        return lo
    while hi / lo - 1 > 1e-6:
        mid = math.sqrt(lo * hi)
        if _power_at(n, discordance, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def n_for_mcnemar_normal(diff: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Connor's (1987) normal-approximation sample size for McNemar's test, for comparison."""
    d = abs(diff)
    _check_discordance(discordance)
    _check_alpha_power(alpha, power)
    if not 0 < d <= 1:
        raise MetricInputError(f"diff must be a non-zero change of at most 1, got {diff!r}")
    psi = max(discordance, d)
    root = norm.ppf(1 - alpha / 2) * math.sqrt(psi) + norm.ppf(power) * math.sqrt(max(psi - d * d, 0.0))
    return math.ceil(root**2 / d**2)


def _first_dip(n: int, psi: float, d: float, alpha: float, power: float) -> int | None:
    """None when the power reaches the target at n and across the window above n; else the first
    n (in the window, from n up) where it does not."""
    top = n + max(1, math.ceil(_WINDOW * n))
    checked = np.unique(np.linspace(n, top, min(top - n + 1, _WINDOW_POINTS)).round().astype(int))
    for candidate in checked:
        if _power_at(int(candidate), psi, d, alpha) < power:
            return int(candidate)
    return None


def n_for_mcnemar(diff: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """The number of paired examples the exact McNemar test needs to detect a change of `diff`
    (p10 - p01, 0-1) at the given discordance with the target power. The power of a discrete test
    can dip as n grows, so the answer is an n whose power, and that of every n up to 2% above it,
    reaches the target; the one below it does not (doubling, then bisection)."""
    d = abs(diff)
    if not 0 < d <= 1:
        raise MetricInputError(f"diff must be a non-zero change of at most 1, got {diff!r}")
    _check_discordance(discordance)
    _check_alpha_power(alpha, power)
    psi = max(discordance, d)
    guess = n_for_mcnemar_normal(d, psi, alpha, power)
    if guess > MAX_N // 2:
        raise MetricInputError(f"a change of {d:g} at discordance {psi:g} needs about {guess:,} examples "
                               f"(normal approximation); tunelab plans up to {MAX_N:,}")
    lo, hi = 0, 1  # the power at n = 0 is 0
    while _power_at(hi, psi, d, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > MAX_N:
            raise MetricInputError(f"a change of {d:g} at discordance {psi:g} needs more than {MAX_N:,} examples")
    while True:
        while hi - lo > 1:  # invariant: power(lo) < target <= power(hi)
            mid = (lo + hi) // 2
            if _power_at(mid, psi, d, alpha) >= power:
                hi = mid
            else:
                lo = mid
        dip = _first_dip(hi, psi, d, alpha, power)
        if dip is None:
            return hi
        lo, hi = dip, dip + 1  # the power dips at `dip`: look for the next crossing above it
        while _power_at(hi, psi, d, alpha) < power:
            lo, hi = hi, hi + max(1, hi - dip)


def mde_mean(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean paired difference a z-test (or the paired bootstrap) detects with the
    target power, given the standard error of the difference (Cohen 1988)."""
    if not se > 0 or not math.isfinite(se):
        raise MetricInputError(f"the standard error must be a positive number, got {se!r}")
    _check_alpha_power(alpha, power)
    return _z(alpha, power) * se


def n_for_mean(diff: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """The number of paired examples to detect a mean difference `diff` when the per-example
    differences have standard deviation `sd` (Cohen 1988)."""
    if not sd > 0 or not math.isfinite(sd):
        raise MetricInputError(f"sd must be a positive number, got {sd!r}")
    if diff == 0 or not math.isfinite(diff):
        raise MetricInputError(f"diff must be a non-zero number, got {diff!r}")
    _check_alpha_power(alpha, power)
    return math.ceil((_z(alpha, power) * sd / abs(diff)) ** 2)


def _three_digits(x: float) -> str:
    # three significant digits, never in exponent form: 12.3, 1.23, 0.123
    if x == 0:
        return "0"
    decimals = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def to_points(value: float, scale: str = "0-1") -> float:
    """A 0-1 metric's change in points (x 100); a 0-100 metric's (BLEU, chrF) as it is."""
    if scale not in ("0-1", "0-100"):
        raise MetricInputError(f"scale must be '0-1' or '0-100', got {scale!r}")
    return value * 100 if scale == "0-1" else value


def describe_mde(mde: float | None, scale: str = "0-1", power: float = 0.8) -> str:
    """'this test could see changes of >= 4.2 points' (the MDE in the metric's points)."""
    if mde is None:
        return f"this test could not see any change with {power:.0%} power, not even one on every example"
    return f"this test could see changes of >= {_three_digits(to_points(mde, scale))} points"
