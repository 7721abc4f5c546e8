"""One paired test per comparison, chosen by the metric, with a CI that agrees with its p.

- `paired_test(a, b)`: per-record scores of two systems on the same records. 0/1 scores get the
  exact McNemar test and its consistent interval (`mcnemar_test`), anything else the paired
  bootstrap (stats.paired_bootstrap: percentile interval and the p-value that inverts it).
- `mcnemar_test`: exact McNemar at every number of discordant pairs m = b + c (p = twice the
  smaller binomial tail of b under Bin(m, 1/2)), and beside it Tango's score interval for the
  difference (b - c) / n (Tango 1998; recommended for paired proportions by Newcombe 1998 and
  Fagerland, Lydersen & Laake 2013), widened to reach 0 whenever the exact test does not reject:
  "the CI excludes 0" and "p < alpha" are the same event (tests/metrics/test_paired.py checks every
  table up to 80 + 80 discordant pairs). An interval conditional on m (Clopper-Pearson on b / m,
  scaled by m / n) would agree with the p by construction, but with few discordant pairs its width
  is capped at m / n: it covered a difference of 0.027 at n = 112 in 36% of simulated test sets
  (0.01 vs 0.03: 82%). The score interval covers 95-97% there (simulated in the tests).
- `seeds_and_examples`: systems trained over several seeds (docs/evaluation.md, "Seeds").

Every result names its test ("test"), and carries n and the minimum detectable effect ("mde":
the smallest |difference| the test would detect with 80% power at alpha = 1 - confidence, in
the metric's units; metrics/power.py).
"""

from __future__ import annotations

import math

import numpy as np

from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.stats import mcnemar, paired_bootstrap, paired_bootstrap_statistic

EXACT_MCNEMAR = "exact McNemar"
SEEDS_AND_EXAMPLES = "seeds (Welch t) and examples (z)"
POWER = 0.8


def is_binary(*arrays) -> bool:
    values = np.unique(np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]))
    return bool(len(values)) and set(values.tolist()) <= {0.0, 1.0}


def tango_score(b: int, c: int, n: int, d0: float) -> float:
    """Tango's score statistic for H0: p10 - p01 = d0 (b = #10, c = #01 of n pairs), with the
    restricted maximum-likelihood estimate of the discordant cell (Tango 1998; as PropCIs'
    scoreci.mp, cells named the other way round)."""
    pa, pb, pc = 2 * n, -b - c + (2 * n - b + c) * d0, -c * d0 * (1 - d0)
    q = (math.sqrt(max(pb * pb - 4 * pa * pc, 0.0)) - pb) / (2 * pa)
    var = n * (2 * q + d0 * (1 - d0))
    gap = b - c - n * d0
    if var <= 0:
        return 0.0 if gap == 0 else math.copysign(math.inf, gap)
    return gap / math.sqrt(var)


def mcnemar_interval(b: int, c: int, n: int, confidence: float = 0.95, p_value: float | None = None) -> list[float]:
    """The interval of (b - c) / n beside the exact McNemar p: Tango's score interval, widened to
    reach 0 whenever the exact test does not reject (the exact test is the more conservative,
    so the CI never claims what the p does not). Bisection on the monotone score."""
    from scipy.stats import norm

    z = float(norm.isf((1 - confidence) / 2))
    d = (b - c) / n

    def root(target: float, lo: float, hi: float) -> float:
        for _ in range(80):  # (hi - lo) / 2^80: far below any printed digit
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if tango_score(b, c, n, mid) > target else (lo, mid)
        return (lo + hi) / 2

    lo, hi = root(z, -1.0, d), root(-z, d, 1.0)
    p = mcnemar_exact_p(b, c) if p_value is None else p_value
    if p >= 1 - confidence:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    elif lo <= 0 <= hi:  # the score test is the less conservative: never seen (tests), kept by construction
        lo, hi = (math.nextafter(0.0, 1.0), hi) if d > 0 else (lo, math.nextafter(0.0, -1.0))
    return [lo, hi]


def mcnemar_exact_p(b: int, c: int) -> float:
    from tunelab.metrics.stats import _binomial_two_sided

    return 1.0 if b + c == 0 else _binomial_two_sided(b, b + c)


def mcnemar_test(correct_a, correct_b, confidence: float = 0.95) -> dict:
    """mean(a) - mean(b) for 0/1 scores: exact McNemar p, its consistent CI, the MDE."""
    from tunelab.metrics.power import mde_mcnemar

    result = mcnemar(correct_a, correct_b, exact=True)
    b, c, n = result["b"], result["c"], result["n"]
    if n == 0:
        raise MetricInputError("a paired comparison needs at least one record")
    return {"diff": (b - c) / n, "ci": mcnemar_interval(b, c, n, confidence, result["p_value"]),
            "p_value": result["p_value"],
            "n": n, "test": EXACT_MCNEMAR, "mcnemar": result,
            "mde": mde_mcnemar(n, (b + c) / n, alpha=1 - confidence, power=POWER)}


def with_mde(test: dict, confidence: float) -> dict:
    """A bootstrap test with its MDE from the bootstrap standard error (z-based, metrics/power.py)."""
    from tunelab.metrics.power import mde_mean

    # no spread at all among the resamples (identical systems, or 1 resample): nothing to plan from
    test["mde"] = mde_mean(test["se"], alpha=1 - confidence, power=POWER) if test["se"] > 0 else None
    return test


def paired_test(a, b, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """The one test for mean(a) - mean(b) over the same records, chosen by the scores' kind."""
    if is_binary(a, b):
        return mcnemar_test(np.asarray(a).astype(bool), np.asarray(b).astype(bool), confidence)
    return with_mde(paired_bootstrap(a, b, n_resamples, seed, confidence), confidence)


def paired_test_statistic(stats_a, stats_b, score_fn, n_resamples: int = 1000, seed: int = 0,
                          confidence: float = 0.95) -> dict:
    """The one test for a corpus statistic (BLEU, chrF, macro-F1, perplexity): the paired bootstrap."""
    return with_mde(paired_bootstrap_statistic(stats_a, stats_b, score_fn, n_resamples, seed, confidence), confidence)


def _upper(tail: float, df: float) -> float:
    """The quantile with `tail` probability above it (isf: exact far into the tail)."""
    from scipy.stats import norm, t

    return float(t.isf(tail, df)) if math.isfinite(df) else float(norm.isf(tail))


def seed_half_width(alpha: float, var_seed: float, df_seed: float, example_var: float) -> float:
    """sqrt((t_{df_seed} * se_seed)^2 + (z * se_examples)^2) at level 1 - alpha: the half-width of
    every interval over training seeds (a difference here, one system's value in
    evaluate/comparison.system_value)."""
    return math.hypot(_upper(alpha / 2, df_seed) * math.sqrt(var_seed),
                      _upper(alpha / 2, math.inf) * math.sqrt(example_var))


def _p_value(diff: float, var_seed: float, df_seed: float, example_var: float) -> float:
    """The level whose interval just reaches 0 (searched on log10 p: p spans many decades)."""
    from scipy.optimize import brentq

    if var_seed + example_var == 0:
        return 1.0 if diff == 0 else 0.0
    f = lambda y: seed_half_width(10.0 ** y, var_seed, df_seed, example_var) - abs(diff)  # noqa: E731
    top = math.log10(1.0 - 1e-12)
    if f(top) >= 0:
        return 1.0
    if f(-30.0) <= 0:
        return 1e-30  # beyond anything a printed p shows ("< 0.001")
    return 10.0 ** brentq(f, -30.0, top, xtol=1e-12, maxiter=500)


def seeds_and_examples(seed_values_a, seed_values_b, example_var: float, n: int, confidence: float = 0.95,
                       seeds_a=None, seeds_b=None, noise=(0.0, 0.0)) -> dict:
    """mean over a's seeds - mean over b's seeds, accounting for seed and example variance.

    seed_values_a/b: each seed's score (a system that has no training seed, such as the base
    model, has one value and no seed variance). example_var: the example-level variance of the
    seed-averaged paired difference (for a mean metric var_i(dbar_i) / n; for a corpus metric the
    bootstrap variance). noise: for each side, the part of the seed-to-seed variance of its scores
    that is example noise differing between seeds (the seed x example residual mean square / n of
    a two-way layout of per-example scores; Searle, Casella & McCulloch 1992, ch. 4): it is already
    in example_var, so it is taken out of the seed part (kept >= 0); 0 for corpus statistics, where
    it cannot be separated (conservative).

    The seed part v_s = s_a^2 / k + s_b^2 / l is a Student t quantity with Welch's degrees of
    freedom for those terms alone (Welch 1947); the example part, from hundreds of examples, is
    normal. Half-width sqrt((t * sqrt(v_s))^2 + (z * se_examples)^2): exact for pure seed noise,
    the z interval for pure example noise. p inverts the same interval (the level at which it
    reaches 0), so the CI excludes 0 exactly when p < 1 - confidence. Coverage, simulated with
    known variance components: docs/evaluation.md, "Seeds" (tests/metrics/test_paired.py). A t
    with Satterthwaite's df over all terms at once under-covers with 3 seeds (91-92%: a small
    seed-variance estimate also raises its df)."""
    a, b = np.asarray(seed_values_a, dtype=float), np.asarray(seed_values_b, dtype=float)
    if a.size == 0 or b.size == 0:
        raise MetricInputError("each system needs at least one seed's score")
    k, l = a.size, b.size
    var_a = max(0.0, float(a.var(ddof=1)) - noise[0]) / k if k > 1 else 0.0
    var_b = max(0.0, float(b.var(ddof=1)) - noise[1]) / l if l > 1 else 0.0
    var_seed = var_a + var_b
    denom = sum(v * v / d for v, d in ((var_a, k - 1), (var_b, l - 1)) if d > 0 and v > 0)
    df_seed = var_seed ** 2 / denom if denom > 0 else math.inf
    diff = float(a.mean() - b.mean())
    alpha = 1 - confidence
    half = seed_half_width(alpha, var_seed, df_seed, example_var)
    mde = math.hypot((_upper(alpha / 2, df_seed) + _upper(1 - POWER, df_seed)) * math.sqrt(var_seed),
                     (_upper(alpha / 2, math.inf) + _upper(1 - POWER, math.inf)) * math.sqrt(example_var)) \
        if var_seed + example_var > 0 else None  # no spread at all: nothing to plan from
    per_seed = per_seed_differences(a, b, seeds_a, seeds_b)
    holds = bool(per_seed) and diff != 0 and all(np.sign(x) == np.sign(diff) for x in per_seed)
    return {"diff": diff, "ci": [diff - half, diff + half], "p_value": _p_value(diff, var_seed, df_seed, example_var),
            "se": math.sqrt(var_seed + example_var), "seed_df": float(df_seed) if math.isfinite(df_seed) else None,
            "test": SEEDS_AND_EXAMPLES, "n": n, "n_seeds": [k, l],
            "seed_sd": [float(a.std(ddof=1)) if k > 1 else None, float(b.std(ddof=1)) if l > 1 else None],
            "per_seed_diffs": per_seed, "holds_in_every_seed": holds, "mde": mde}


def seed_noise(per_example) -> float:
    """The seed x example residual mean square / n of a (seeds, examples) score matrix: how much
    of the seed-to-seed variance of the seeds' mean scores is example-level noise."""
    y = np.asarray(per_example, dtype=float)
    k, n = y.shape
    if k < 2 or n < 2:
        return 0.0
    r = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    return float((r * r).sum() / ((k - 1) * (n - 1)) / n)


def per_seed_differences(a: np.ndarray, b: np.ndarray, seeds_a=None, seeds_b=None) -> list[float]:
    """Each seed's own difference: against b's one value, against b's run of the same seed
    (matched by seed number, else by position when both have as many), else against b's mean."""
    if b.size == 1:
        return [float(x - b[0]) for x in a]
    if a.size == 1:
        return [float(a[0] - y) for y in b]
    if seeds_a is not None and seeds_b is not None and sorted(seeds_a) == sorted(seeds_b):
        order = {s: i for i, s in enumerate(seeds_b)}
        return [float(x - b[order[s]]) for x, s in zip(a, seeds_a)]
    if a.size == b.size:
        return [float(x - y) for x, y in zip(a, b)]
    return [float(x - b.mean()) for x in a]
