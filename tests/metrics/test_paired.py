"""The one paired test per comparison: its CI never contradicts its p (edge cases and random
cases), the exact McNemar p equals scipy's, and the intervals cover by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from tunelab.evaluate.comparison import compare_metric
from tunelab.metrics.paired import mcnemar_interval, mcnemar_test, paired_test, seeds_and_examples
from tunelab.metrics.stats import paired_bootstrap


def excludes_zero(ci) -> bool:
    return ci[0] > 0 or ci[1] < 0


def binary_pair(b: int, c: int, n: int):
    """0/1 scores with b records a-right-b-wrong, c the reverse, the rest both right."""
    a = np.ones(n, dtype=bool)
    other = np.ones(n, dtype=bool)
    other[:b] = False
    a[b:b + c] = False
    return a, other


@pytest.mark.parametrize("b,c,n", [(0, 0, 5), (0, 0, 5000), (5, 0, 5), (0, 5, 5), (5, 0, 100), (6, 0, 100),
                                   (60, 0, 5000), (3, 2, 5), (30, 10, 5000), (2500, 2500, 5000), (14, 4, 112)])
def test_mcnemar_ci_agrees_with_p_on_edge_cases(b, c, n):
    a, other = binary_pair(b, c, n)
    test = mcnemar_test(a, other)
    assert test["diff"] == pytest.approx((b - c) / n)
    if b + c:
        assert test["p_value"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    assert excludes_zero(test["ci"]) == (test["p_value"] < 0.05)
    assert test["ci"][0] <= test["diff"] <= test["ci"][1] and test["test"] == "exact McNemar"


def test_mcnemar_ci_agrees_with_p_everywhere():
    """Every table with b, c <= 80 at n = 5 ... 5,000 (where they fit), and random large tables:
    never a CI beside a contrary p."""
    from tunelab.metrics.stats import mcnemar

    cases = [(b, c, n) for n in (5, 50, 200, 5000) for b in range(min(n, 80) + 1) for c in range(min(n - b, 80) + 1)]
    rng = np.random.default_rng(0)
    cases += [(int(x), int(y), 5000) for x, y in rng.integers(0, 1500, size=(100, 2))]
    for b, c, n in cases:
        a, other = binary_pair(b, c, n)
        p = mcnemar(a, other, exact=True)["p_value"]
        for confidence in (0.9, 0.95):
            ci = mcnemar_interval(b, c, n, confidence)
            assert excludes_zero(ci) == (p < 1 - confidence), (b, c, n, confidence)
            assert ci[0] <= (b - c) / n <= ci[1]


def test_the_user_case_five_discordant_pairs_is_not_significant():
    """SciQ exact match 0.04 -> 0.14 (b = 5, c = 0 of 50): the bootstrap said p = 0.016; the exact
    test says 0.0625 and its CI includes zero."""
    a, other = binary_pair(5, 0, 50)
    test = paired_test(a.astype(float), other.astype(float))
    assert test["test"] == "exact McNemar" and test["p_value"] == pytest.approx(0.0625)
    assert test["ci"][0] <= 0 <= test["ci"][1]


@pytest.mark.parametrize("n", [5, 37, 5000])
def test_bootstrap_ci_agrees_with_p(n):
    rng = np.random.default_rng(n)
    for trial in range(40):
        a = rng.normal(0.5, 0.2, n)
        b = a + rng.normal(rng.choice([0.0, 0.01, 0.05]), 0.1, n)
        for confidence in (0.9, 0.95):
            test = paired_bootstrap(b, a, 999 if trial % 2 else 1000, seed=trial, confidence=confidence)
            assert excludes_zero(test["ci"]) == (test["p_value"] < 1 - confidence), (n, trial)
    same = paired_bootstrap(np.ones(n) * 0.3, np.ones(n) * 0.3)
    assert same["ci"] == [0.0, 0.0] and same["p_value"] == 1.0


def test_mcnemar_interval_covers():
    """1,000 simulated paired 0/1 test sets per setting, few discordant pairs included: the interval
    covers the true difference p10 - p01 in 95% - 2 to 95% + 3 points of them (the widening to 0
    where the exact test does not reject makes it conservative, never liberal; figures in
    docs/evaluation.md)."""
    rng = np.random.default_rng(1)
    for n, p10, p01 in ((112, 0.0, 0.027), (112, 0.01, 0.03), (112, 0.10, 0.04), (60, 0.05, 0.05),
                        (1000, 0.005, 0.0), (1000, 0.06, 0.03)):
        cells = rng.multinomial(n, [p10, p01, 1 - p10 - p01], size=1000)
        covered = []
        for b, c, _ in cells:
            lo, hi = mcnemar_interval(int(b), int(c), n)
            covered.append(lo <= p10 - p01 <= hi)
        # at p10 = p01 coverage is 1 - the exact test's size, which is below alpha: up to 99%
        high = 1.0 if p10 == p01 else 0.98
        assert 0.93 <= np.mean(covered) <= high, (n, p10, p01, np.mean(covered))


def simulate(k, l, n, sd_seed, sd_item_system, sd_noise, base, rng, true=0.05):
    """Per-example scores y[s, i] = mu + u_s + alpha_i + beta_i + e[s, i] for each system, alpha
    shared (paired examples); base: the reference has no training seed (one run, no u, no e)."""
    alpha = rng.normal(0, 0.2, n)
    runs_a = [true + rng.normal(0, sd_seed) + alpha + rng.normal(0, sd_item_system, n) + rng.normal(0, sd_noise, n)
              for _ in range(k)]
    beta_b = rng.normal(0, sd_item_system, n)
    runs_b = [alpha + beta_b] if base else [rng.normal(0, sd_seed) + alpha + beta_b + rng.normal(0, sd_noise, n)
                                           for _ in range(l)]
    as_rows = lambda runs: [{str(i): {"scores": {"token_f1": float(v)}} for i, v in enumerate(x)} for x in runs]  # noqa: E731
    return compare_metric("token_f1", as_rows(runs_a), as_rows(runs_b))


@pytest.mark.parametrize("k,l,sd_seed,base", [(3, 1, 0.03, True), (3, 1, 0.01, True), (3, 3, 0.002, False),
                                              (3, 3, 0.03, False), (5, 5, 0.02, False)])
def test_seed_interval_coverage(k, l, sd_seed, base):
    """1,000 simulated experiments with known seed and example variance components: the
    seeds-and-examples interval covers the true difference in 95% +- 2.5 points of them
    (figures in docs/evaluation.md, "Seeds")."""
    rng = np.random.default_rng(k * 100 + int(sd_seed * 1000))
    covered = 0
    for _ in range(1000):
        test = simulate(k, l, 200, sd_seed, 0.05, 0.05, base, rng)
        covered += test["ci"][0] <= 0.05 <= test["ci"][1]
        assert excludes_zero(test["ci"]) == (test["p_value"] < 0.05)
    assert 0.93 <= covered / 1000 <= 0.975, covered / 1000


def test_seed_result_says_whether_the_ranking_holds_in_every_seed():
    test = seeds_and_examples([0.90, 0.92, 0.88], [0.85], 0.0004, 100, seeds_a=[0, 1, 2])
    assert test["per_seed_diffs"] == pytest.approx([0.05, 0.07, 0.03]) and test["holds_in_every_seed"]
    mixed = seeds_and_examples([0.90, 0.80, 0.88], [0.85, 0.84, 0.86], 0.0001, 100, seeds_a=[0, 1, 2], seeds_b=[2, 1, 0])
    assert mixed["per_seed_diffs"] == pytest.approx([0.90 - 0.86, 0.80 - 0.84, 0.88 - 0.85])  # matched by seed
    assert not mixed["holds_in_every_seed"] and mixed["seed_sd"][0] == pytest.approx(np.std([0.9, 0.8, 0.88], ddof=1))
    assert excludes_zero(mixed["ci"]) == (mixed["p_value"] < 0.05)
