"""Confidence intervals and paired significance tests over per-record scores (numpy, scipy, seeded).

Randomness: every function takes `seed` and draws from `numpy.random.default_rng(seed)`; the
bootstrap draws resample r as `rng.integers(0, n, size=n)` in order (drawn in blocks of rows, which
gives the same stream), approximate randomisation draws swap masks as
`rng.integers(2, size=n)` per trial (1 = swap). So a result is reproducible from (data, seed,
n_resamples), and tests check it against a plain loop with the same seed.

One comparison, one test, and a CI that agrees with its p (docs/evaluation.md, "Paired tests"):
- 0/1 per-record scores (accuracy, exact match): `paired.mcnemar_test`, the exact McNemar test
  (b ~ Bin(b + c, 1/2), p = 2 x the smaller tail, at every b + c: McNemar 1947, exact
  conditional form) beside Tango's score interval of (b - c) / n, widened to 0 wherever the
  exact test does not reject, so the CI excludes 0 exactly when p < 1 - confidence.
- everything else: `paired_bootstrap` / `paired_bootstrap_statistic`, the percentile interval of
  the resampled difference and the p-value that inverts it, p = 2 min(#{d* <= 0}, #{d* >= 0}) / R
  (Efron & Tibshirani 1993, ch. 15-16: the achieved significance level of the percentile
  interval); the interval's ends are the order statistics that make "CI excludes 0" and
  "p < 1 - confidence" the same event (no interpolation between resamples). p is at least 1/R:
  R resamples cannot show less.
- several training seeds per system: `paired.seeds_and_examples`: the seed-to-seed variance of
  each system's score (a Welch t part) and the example-level variance of the seed-averaged paired
  difference (a z part) in one interval (why seeds: Bouthillier et al. 2021); its coverage is
  simulated in tests/metrics/test_paired.py.
- approx_randomization (Noreen 1989; Riezler & Maxwell 2005) and the chi-square McNemar are kept
  for `tunelab score --compare`'s JSON, which lists them beside the chosen test.
Ties in the p-value counts use a relative tolerance of 1e-12 so that float round-off in the
vectorised sums cannot flip a comparison.
"""

from __future__ import annotations

import math

import numpy as np

from tunelab.metrics.errors import MetricInputError

_BLOCK_ELEMENTS = 4_000_000  # rows x n drawn at a time (~32 MB of int64 indices)
MCNEMAR_EXACT_BELOW = 25  # only for exact=None (tunelab score's chi-square listing)
PAIRED_BOOTSTRAP = "paired bootstrap (percentile)"


def format_p_value(p: float | None) -> str:
    """A p-value as printed everywhere: three significant digits, "< 0.001" below that (a
    resampling test cannot resolve smaller values, and "0" would claim certainty)."""
    if p is None:
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def p_clause(p: float | None) -> str:
    """"p = 0.0123" or "p < 0.001", for sentences."""
    text = format_p_value(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _as_array(values, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise MetricInputError(f"{name} must be a flat list of numbers")
    if array.size == 0:
        raise MetricInputError(f"{name} is empty: nothing to resample")
    if not np.all(np.isfinite(array)):
        raise MetricInputError(f"{name} contains nan or inf")
    return array


def _check_resamples(n_resamples: int) -> None:
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise MetricInputError(f"n_resamples must be a positive integer, got {n_resamples!r}")


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise MetricInputError(f"confidence must be between 0 and 1, got {confidence!r}")


def resample_index_blocks(n: int, n_resamples: int, seed: int):
    """Yield (rows, n) int64 index blocks; together the n_resamples bootstrap resamples in order."""
    rng = np.random.default_rng(seed)
    rows = max(1, _BLOCK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_resamples:
        take = min(rows, n_resamples - done)
        yield rng.integers(0, n, size=(take, n))
        done += take


def bootstrap_means(values, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """The mean of each bootstrap resample (vectorised per block)."""
    values = _as_array(values)
    _check_resamples(n_resamples)
    return np.concatenate(
        [values[idx].mean(axis=1) for idx in resample_index_blocks(len(values), n_resamples, seed)]
    )


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    _check_confidence(confidence)
    alpha = 1 - confidence
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(values, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values`."""
    return percentile_interval(bootstrap_means(values, n_resamples, seed), confidence)


def _paired(a, b) -> np.ndarray:
    a, b = _as_array(a, "a"), _as_array(b, "b")
    if a.shape != b.shape:
        raise MetricInputError(f"paired scores need the same records: {len(a)} vs {len(b)} values")
    return a - b


def _at_least(samples: np.ndarray, threshold: float, scale: float) -> int:
    return int(np.count_nonzero(samples >= threshold - 1e-12 * scale))


def percentile_test(diffs: np.ndarray, confidence: float, scale: float) -> tuple[list[float], float]:
    """The percentile interval of bootstrap differences and the p-value that inverts it.

    p = 2 min(#{d* <= 0}, #{d* >= 0}) / R (at least 1/R, at most 1); the interval's ends are the
    k-th smallest and k-th largest d*, k = ceil(R (1 - confidence) / 2), so that the interval
    excludes 0 exactly when p < 1 - confidence. |d*| below 1e-12 x scale counts as 0 (float
    round-off in vectorised sums must not decide a tie)."""
    _check_confidence(confidence)
    d = np.sort(np.asarray(diffs, dtype=float))
    d[np.abs(d) <= 1e-12 * scale] = 0.0
    r = len(d)
    k = max(1, math.ceil(r * (1 - confidence) / 2 - 1e-9))
    below, above = int(np.count_nonzero(d <= 0)), int(np.count_nonzero(d >= 0))
    p = min(1.0, max(2 * min(below, above), 1) / r)
    return [float(d[k - 1]), float(d[r - k])], p


def paired_bootstrap(a, b, n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Paired bootstrap of mean(a) - mean(b) over the same records: diff, percentile CI and the
    p-value that inverts it (percentile_test), the bootstrap standard error."""
    d = _paired(a, b)
    means = bootstrap_means(d, n_resamples, seed)
    return _paired_bootstrap_result(float(d.mean()), means, len(d), n_resamples, seed, confidence,
                                    float(np.abs(d).mean()) or 1.0)


def _paired_bootstrap_result(diff: float, diffs: np.ndarray, n: int, n_resamples: int, seed: int,
                             confidence: float, scale: float) -> dict:
    # what both paired bootstraps (of a mean, of a corpus statistic) report, from the resampled diffs
    ci, p = percentile_test(diffs, confidence, scale)
    return {
        "diff": diff,
        "ci": ci,
        "p_value": p,
        "se": float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0,
        "a_wins": float(np.count_nonzero(diffs > 0) / n_resamples),
        "n": n,
        "n_resamples": n_resamples,
        "seed": seed,
        "test": PAIRED_BOOTSTRAP,
    }


def approx_randomization(a, b, n_resamples: int = 10000, seed: int = 0) -> dict:
    """Approximate randomisation (paired permutation) test of mean(a) - mean(b): diff, p-value."""
    d = _paired(a, b)
    _check_resamples(n_resamples)
    n = len(d)
    diff = float(d.mean())
    scale = float(np.abs(d).mean()) or 1.0
    return _randomization(n, n_resamples, seed, diff, scale, lambda swap: np.abs((1.0 - 2.0 * swap) @ d / n))


def _randomization(n: int, n_resamples: int, seed: int, diff: float, scale: float, swapped) -> dict:
    # the permutation loop of both approximate randomisation tests: swapped(swap) gives the
    # |difference| under each row of 0/1 swaps (int64 draws: the same stream in blocks or rows)
    rng = np.random.default_rng(seed)
    rows = max(1, _BLOCK_ELEMENTS // n)
    extreme, done = 0, 0
    while done < n_resamples:
        take = min(rows, n_resamples - done)
        extreme += _at_least(swapped(rng.integers(2, size=(take, n))), abs(diff), scale)
        done += take
    return {
        "diff": diff,
        "p_value": (extreme + 1) / (n_resamples + 1),
        "n": n,
        "n_resamples": n_resamples,
        "seed": seed,
        "test": "approximate randomization (two-sided)",
    }


def _binomial_two_sided(k: int, n: int) -> float:
    # exact two-sided binomial test at p = 1/2: symmetric, so 2 * P(X <= min(k, n - k)), capped at 1
    m = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(m + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar(correct_a, correct_b, exact: bool | None = None) -> dict:
    """McNemar's test on paired correctness (accuracy of a vs b on the same records)."""
    a = np.asarray(correct_a)
    b_arr = np.asarray(correct_b)
    if a.shape != b_arr.shape or a.ndim != 1:
        raise MetricInputError(f"paired correctness needs the same records: {a.shape} vs {b_arr.shape}")
    if a.size and not (np.isin(a, [0, 1]).all() and np.isin(b_arr, [0, 1]).all()):
        raise MetricInputError("McNemar needs correct/incorrect (True/False or 1/0) per record")
    a, b_arr = a.astype(bool), b_arr.astype(bool)
    b = int(np.count_nonzero(a & ~b_arr))
    c = int(np.count_nonzero(~a & b_arr))
    discordant = b + c
    if exact is None:
        exact = discordant < MCNEMAR_EXACT_BELOW
    if discordant == 0:
        statistic, p_value = 0.0, 1.0
    elif exact:
        statistic, p_value = float(min(b, c)), _binomial_two_sided(b, discordant)
    else:
        statistic = (abs(b - c) - 1) ** 2 / discordant
        p_value = math.erfc(math.sqrt(statistic / 2))  # chi-square survival function, 1 dof
    return {
        "b": b,
        "c": c,
        "n": int(a.size),
        "statistic": statistic,
        "p_value": p_value,
        "exact": bool(exact),
        "test": "McNemar exact binomial" if exact else "McNemar chi-square with continuity correction",
    }


# --- corpus-level statistics (BLEU, chrF): resample per-record sufficient statistics ------------


def resample_counts(n: int, n_resamples: int, seed: int, dtype=np.float64):
    """Yield (rows, n) matrices: how often each record is drawn in each bootstrap resample (the
    same resamples, from the same stream, as resample_index_blocks). One bincount per resample:
    n bins stay in cache, where one bincount over rows * n bins would not."""
    for idx in resample_index_blocks(n, n_resamples, seed):
        counts = np.empty(idx.shape, dtype=dtype)
        for row, drawn in zip(counts, idx):
            row[:] = np.bincount(drawn, minlength=n)
        yield counts


def resample_count_matrix(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """All of resample_counts as one (n_resamples, n) matrix of small unsigned integers."""
    dtype = np.uint8 if n < 256 else np.uint16 if n < 65536 else np.uint32  # a count is at most n
    blocks = list(resample_counts(n, n_resamples, seed, dtype))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def prefetch_resample_counts(n: int, n_resamples: int, seed: int, max_cells: int = 50_000_000):
    """Start drawing resample_count_matrix in a background thread and return its Future (None when
    the matrix would exceed max_cells). numpy's generator releases the GIL, so the draw overlaps
    whatever the caller computes meanwhile; pass the Future to bootstrap_cis."""
    if n < 1 or n_resamples < 1 or n * n_resamples > max_cells:
        return None
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelab-resamples")
    future = pool.submit(resample_count_matrix, n, n_resamples, seed)
    pool.shutdown(wait=False)
    return future


def bootstrap_cis(columns, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                  counts=None) -> np.ndarray:
    """Percentile bootstrap CI of the mean of every column of an (n_records, k) array, all from
    the same resamples (those bootstrap_ci draws with this seed): a (k, 2) array of [lo, hi].

    One resample-count matrix serves every column, so k series cost about as much as one.
    The means equal bootstrap_ci's up to float summation order (a matrix product here).
    `counts`: the same resamples drawn beforehand (prefetch_resample_counts' Future or its result).
    """
    columns = np.asarray(columns, dtype=float)
    if columns.ndim != 2 or columns.shape[0] == 0:
        raise MetricInputError("columns must be a non-empty (n_records, k) array")
    if not np.all(np.isfinite(columns)):
        raise MetricInputError("columns contain nan or inf")
    _check_resamples(n_resamples)
    _check_confidence(confidence)
    n = len(columns)
    if counts is None:
        blocks = resample_counts(n, n_resamples, seed)
    else:
        counts = counts.result() if hasattr(counts, "result") else counts
        if counts.shape != (n_resamples, n):
            raise MetricInputError(f"counts are {counts.shape}, expected {(n_resamples, n)}")
        rows = max(1, _BLOCK_ELEMENTS // n)  # the blocks resample_counts yields: the same products
        blocks = (counts[r : r + rows].astype(np.float64) for r in range(0, n_resamples, rows))
    means = np.concatenate([block @ columns / n for block in blocks])
    alpha = 1 - confidence
    return np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0).T


def bootstrap_statistic(stats, score_fn, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """score_fn(summed statistics) for each bootstrap resample of the records.

    stats: (n_records, k) per-record sufficient statistics; score_fn maps a (rows, k) array of
    summed statistics to (rows,) scores, or to (rows, m) for m scores from the same resamples
    (the result is then (n_resamples, m))."""
    stats = np.asarray(stats, dtype=float)
    _check_resamples(n_resamples)
    return np.concatenate([score_fn(counts @ stats) for counts in resample_counts(len(stats), n_resamples, seed)])


def paired_bootstrap_statistic(stats_a, stats_b, score_fn, n_resamples=1000, seed=0, confidence=0.95) -> dict:
    """paired_bootstrap for a corpus-level score (e.g. corpus BLEU): the same resampled records
    for both systems, diff = score(a) - score(b)."""
    stats_a, stats_b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    if stats_a.shape != stats_b.shape:
        raise MetricInputError(f"paired statistics need the same records: {stats_a.shape} vs {stats_b.shape}")
    _check_resamples(n_resamples)
    score_a = float(score_fn(stats_a.sum(axis=0)[None])[0])
    score_b = float(score_fn(stats_b.sum(axis=0)[None])[0])
    diff = score_a - score_b
    diffs = []
    for counts in resample_counts(len(stats_a), n_resamples, seed):
        diffs.append(score_fn(counts @ stats_a) - score_fn(counts @ stats_b))
    return _paired_bootstrap_result(diff, np.concatenate(diffs), len(stats_a), n_resamples, seed, confidence,
                                    max(abs(score_a), abs(score_b)) or 1.0)


def approx_randomization_statistic(stats_a, stats_b, score_fn, n_resamples=10000, seed=0) -> dict:
    """approx_randomization for a corpus-level score: swap whole records' statistics."""
    stats_a, stats_b = np.asarray(stats_a, dtype=float), np.asarray(stats_b, dtype=float)
    if stats_a.shape != stats_b.shape:
        raise MetricInputError(f"paired statistics need the same records: {stats_a.shape} vs {stats_b.shape}")
    _check_resamples(n_resamples)
    n = len(stats_a)
    total = stats_a.sum(axis=0) + stats_b.sum(axis=0)
    score_a = float(score_fn(stats_a.sum(axis=0)[None])[0])
    score_b = float(score_fn(stats_b.sum(axis=0)[None])[0])
    diff = score_a - score_b
    scale = max(abs(score_a), abs(score_b)) or 1.0

    def swapped(swap):  # system a's summed statistics after the swaps, and b's as the rest
        swap = swap.astype(float)
        sum_a = (1.0 - swap) @ stats_a + swap @ stats_b
        return np.abs(score_fn(sum_a) - score_fn(total - sum_a))

    return _randomization(n, n_resamples, seed, diff, scale, swapped)
