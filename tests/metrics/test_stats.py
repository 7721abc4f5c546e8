"""Statistics: seeded bootstrap / approximate randomisation against plain-loop references with the
same seed, McNemar against scipy, on two real models' outputs (self-instruct predictions)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest, chi2

from tunelab.metrics.bleu import sentence_bleu
from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.stats import (
    approx_randomization,
    bootstrap_ci,
    bootstrap_cis,
    mcnemar,
    paired_bootstrap,
    prefetch_resample_counts,
)
from tunelab.metrics.token_f1 import token_f1


@pytest.fixture(scope="module")
def two_systems(shared_data):
    folder = shared_data / "instructions" / "self_instruct_predictions"
    systems = {}
    for name in ("text-davinci-001", "text-davinci-003"):
        rows = [json.loads(line) for line in (folder / f"{name}_predictions.jsonl").open()]
        systems[name] = {
            "f1": np.array([token_f1(r["response"], [r["target"]]) for r in rows]),
            "bleu": np.array([sentence_bleu(r["response"].strip(), [r["target"]]).score for r in rows]),
        }
    assert len(systems["text-davinci-001"]["f1"]) == 252
    return systems["text-davinci-003"], systems["text-davinci-001"]


def slow_bootstrap_means(values, n_resamples, seed):
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(values), size=len(values))
        means.append(sum(values[i] for i in idx) / len(values))
    return np.array(means)


def slow_ar_p(a, b, n_resamples, seed):
    rng = np.random.default_rng(seed)
    n = len(a)
    diff = abs(sum(a) / n - sum(b) / n)
    scale = float(np.abs(np.asarray(a) - np.asarray(b)).mean()) or 1.0
    extreme = 0
    for _ in range(n_resamples):
        swap = rng.integers(2, size=n)
        x = [b[i] if swap[i] else a[i] for i in range(n)]
        y = [a[i] if swap[i] else b[i] for i in range(n)]
        extreme += abs(sum(x) / n - sum(y) / n) >= diff - 1e-12 * scale
    return (extreme + 1) / (n_resamples + 1)


@pytest.mark.parametrize("metric", ["f1", "bleu"])
def test_bootstrap_ci_matches_slow_reference(two_systems, metric):
    a, _ = two_systems
    values = a[metric]
    lo, hi = bootstrap_ci(values, n_resamples=500, confidence=0.9, seed=3)
    ref_lo, ref_hi = np.quantile(slow_bootstrap_means(values, 500, 3), [0.05, 0.95])
    assert lo == pytest.approx(ref_lo, abs=1e-9) and hi == pytest.approx(ref_hi, abs=1e-9)
    assert lo < values.mean() < hi
    assert bootstrap_ci(values, 500, 0.9, seed=3) == (lo, hi)  # seeded: reproducible
    assert bootstrap_ci(values, 500, 0.9, seed=4) != (lo, hi)


def test_bootstrap_cis_equal_one_series_at_a_time(two_systems):
    """Many series from one resample matrix: each column's CI is bootstrap_ci's (same seed)."""
    columns = np.column_stack([s[m] for s in two_systems for m in ("f1", "bleu")])
    cis = bootstrap_cis(columns, 300, 0.9, seed=4)
    assert cis.shape == (columns.shape[1], 2)
    for k in range(columns.shape[1]):
        assert cis[k].tolist() == pytest.approx(list(bootstrap_ci(columns[:, k], 300, 0.9, seed=4)), abs=1e-12)
    assert bootstrap_cis(columns, 300, 0.9, seed=5)[0].tolist() != cis[0].tolist()  # the seed matters
    # drawn beforehand in a background thread: exactly the same numbers
    prefetched = prefetch_resample_counts(len(columns), 300, seed=4)
    assert bootstrap_cis(columns, 300, 0.9, seed=4, counts=prefetched).tolist() == cis.tolist()
    with pytest.raises(MetricInputError):
        bootstrap_cis(columns[:0], 10)


@pytest.mark.parametrize("metric", ["f1", "bleu"])
def test_paired_tests_match_slow_reference(two_systems, metric):
    a, b = (s[metric] for s in two_systems)
    boot = paired_bootstrap(a, b, n_resamples=500, seed=11)
    means = slow_bootstrap_means(a - b, 500, 11)
    # the percentile interval's order statistics (k = ceil(500 x 0.025) = 13th from each end) and
    # the p-value that inverts it: 2 min(#{d* <= 0}, #{d* >= 0}) / R, at least 1 / R
    ordered = np.sort(means)
    expected_p = min(1.0, max(2 * min(np.count_nonzero(means <= 0), np.count_nonzero(means >= 0)), 1) / 500)
    assert boot["diff"] == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    assert boot["p_value"] == pytest.approx(expected_p, abs=1e-12)
    assert boot["ci"] == pytest.approx([ordered[12], ordered[500 - 13]], abs=1e-9)

    ar = approx_randomization(a, b, n_resamples=400, seed=5)
    assert ar["p_value"] == pytest.approx(slow_ar_p(list(a), list(b), 400, 5), abs=1e-12)
    # davinci-003 is the better model on this set; the tests agree on the direction
    assert boot["diff"] > 0 and boot["a_wins"] > 0.5


def test_identical_systems_are_not_significant(two_systems):
    a, _ = two_systems
    assert approx_randomization(a["f1"], a["f1"], 200)["p_value"] == 1.0
    assert paired_bootstrap(a["f1"], a["f1"], 200)["p_value"] == 1.0


def test_mcnemar_matches_scipy(two_systems):
    a, b = two_systems
    for threshold in (0.3, 0.5, 0.9):
        ca, cb = a["f1"] >= threshold, b["f1"] >= threshold
        result = mcnemar(ca, cb)
        n_b, n_c = int(np.sum(ca & ~cb)), int(np.sum(~ca & cb))
        assert (result["b"], result["c"]) == (n_b, n_c)
        exact = mcnemar(ca, cb, exact=True)
        assert exact["p_value"] == pytest.approx(binomtest(n_b, n_b + n_c, 0.5).pvalue, rel=1e-12)
        chi = mcnemar(ca, cb, exact=False)
        stat = (abs(n_b - n_c) - 1) ** 2 / (n_b + n_c)
        assert chi["statistic"] == pytest.approx(stat) and chi["p_value"] == pytest.approx(chi2.sf(stat, 1), rel=1e-9)
        assert result["exact"] == (n_b + n_c < 25)


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (3, 9), (12, 12), (1, 20), (40, 20)])
def test_mcnemar_small_and_large_counts(b, c):
    ca = [True] * b + [False] * c + [True] * 5
    cb = [False] * b + [True] * c + [True] * 5
    result = mcnemar(ca, cb)
    if b + c == 0:
        assert result["p_value"] == 1.0
    elif b + c < 25:
        assert result["exact"] and result["p_value"] == pytest.approx(binomtest(b, b + c).pvalue, rel=1e-12)
    else:
        assert not result["exact"]
        assert result["p_value"] == pytest.approx(chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1), rel=1e-9)


def test_bad_input():
    with pytest.raises(MetricInputError, match="same records"):
        paired_bootstrap([1, 2], [1])
    with pytest.raises(MetricInputError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(MetricInputError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(MetricInputError, match="True/False"):
        mcnemar([2, 0], [1, 0])


def test_results_do_not_depend_on_block_size(two_systems, monkeypatch):
    import tunelab.metrics.stats as stats

    a, b = (s["bleu"] for s in two_systems)
    whole = (bootstrap_ci(a, 300, seed=2), paired_bootstrap(a, b, 300, seed=2), approx_randomization(a, b, 300, seed=2))
    monkeypatch.setattr(stats, "_BLOCK_ELEMENTS", 1000)  # 3 rows per block
    blocked = (bootstrap_ci(a, 300, seed=2), paired_bootstrap(a, b, 300, seed=2), approx_randomization(a, b, 300, seed=2))
    assert blocked == whole


def test_corpus_statistic_tests_agree_with_mean_tests(two_systems):
    from tunelab.metrics.stats import (
        approx_randomization_statistic,
        bootstrap_means,
        bootstrap_statistic,
        paired_bootstrap_statistic,
    )

    a, b = (s["f1"] for s in two_systems)
    n = len(a)

    def mean_of(summed):
        return summed[:, 0] / n

    assert bootstrap_statistic(a[:, None], mean_of, 300, seed=8) == pytest.approx(bootstrap_means(a, 300, seed=8), abs=1e-12)
    boot = paired_bootstrap_statistic(a[:, None], b[:, None], mean_of, 300, seed=8)
    plain = paired_bootstrap(a, b, 300, seed=8)
    assert boot["diff"] == pytest.approx(plain["diff"]) and boot["ci"] == pytest.approx(plain["ci"])
    assert boot["p_value"] == pytest.approx(plain["p_value"])
    ar = approx_randomization_statistic(a[:, None], b[:, None], mean_of, 300, seed=8)
    assert ar["p_value"] == pytest.approx(approx_randomization(a, b, 300, seed=8)["p_value"])


def test_p_values_print_the_same_everywhere():
    from tunelab.metrics.stats import format_p_value, p_clause

    assert [format_p_value(p) for p in (0.0, 0.00099, 0.001, 0.01234, 0.5, None)] == \
        ["< 0.001", "< 0.001", "0.001", "0.0123", "0.5", "n/a"]
    assert (p_clause(0.0), p_clause(0.04321)) == ("p < 0.001", "p = 0.0432")
