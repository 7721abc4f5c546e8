"""Power and MDE (tunelab.metrics.power), checked by simulation against the real tests in
tunelab.metrics.stats: datasets drawn at the computed MDE or sample size must be rejected by
McNemar's exact test / the paired bootstrap at the stated power."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.power import (
    critical_counts,
    describe_mde,
    mcnemar_power,
    mde_mcnemar,
    mde_mean,
    n_for_mcnemar,
    n_for_mcnemar_normal,
    n_for_mean,
)
from tunelab.metrics.stats import mcnemar, paired_bootstrap

TUNELAB = [str(Path(sys.executable).parent / "tunelab")]
SIMULATIONS = 2000
ALPHA = 0.05


def simulated_mcnemar_power(n: int, discordance: float, diff: float, seed: int) -> float:
    """The share of SIMULATIONS paired datasets that tunelab's exact McNemar test rejects at ALPHA.
    Each draws the 2x2 table's cells multinomially: p10 = (psi + d) / 2, p01 = (psi - d) / 2,
    the concordant rest split between both right and both wrong."""
    psi = max(discordance, diff)  # a change of d moves at least d of the examples
    p10, p01 = (psi + diff) / 2, (psi - diff) / 2
    cells = np.random.default_rng(seed).multinomial(n, [(1 - psi) / 2, p10, p01, (1 - psi) / 2], size=SIMULATIONS)
    rejected = 0
    for counts in cells:
        correct_a = np.repeat([True, True, False, False], counts)
        correct_b = np.repeat([True, False, True, False], counts)
        rejected += mcnemar(correct_a, correct_b, exact=True)["p_value"] < ALPHA
    return rejected / SIMULATIONS


def brute_force_power(n: int, discordance: float, diff: float) -> float:
    """Every (m, b) with scipy's exact binomial test: the reference for the vectorised sum."""
    q = (discordance + diff) / (2 * discordance)
    total = 0.0
    for m in range(1, n + 1):
        for b in range(m + 1):
            if binomtest(b, m, 0.5).pvalue < ALPHA:
                total += binom.pmf(m, n, discordance) * binom.pmf(b, m, q)
    return total


# (n, discordance, seed): the settings the docs quote (docs/evaluation.md, "Power")
MCNEMAR_CASES = [(112, 0.15, 1), (60, 0.10, 2), (1000, 0.05, 3)]


@pytest.mark.parametrize("n, discordance, seed", MCNEMAR_CASES)
def test_mcnemar_at_its_mde_rejects_at_the_stated_power(n, discordance, seed):
    d = mde_mcnemar(n, discordance)
    exact = mcnemar_power(n, max(discordance, d), d)
    empirical = simulated_mcnemar_power(n, discordance, d, seed)
    print(f"n={n} psi={discordance} d={d:.4f} exact={exact:.4f} empirical={empirical:.4f}")
    assert 0.8 <= exact < 0.8005  # the bisection stops just above the target
    assert abs(empirical - 0.8) <= 0.05
    assert abs(empirical - exact) <= 0.035


def test_n_for_mcnemar_reaches_the_stated_power_in_simulation():
    n = n_for_mcnemar(0.05, 0.15)
    exact = mcnemar_power(n, 0.15, 0.05)
    empirical = simulated_mcnemar_power(n, 0.15, 0.05, seed=4)
    print(f"n={n} (Connor {n_for_mcnemar_normal(0.05, 0.15)}) exact={exact:.4f} empirical={empirical:.4f}")
    assert exact >= 0.8 > mcnemar_power(n - 1, 0.15, 0.05)
    assert abs(empirical - 0.8) <= 0.05


def test_mcnemar_size_matches_simulation_under_no_change():
    # with no change the rejection rate is the test's size: at most alpha (below it: a discrete test)
    exact = mcnemar_power(200, 0.2, 0.0)
    empirical = simulated_mcnemar_power(200, 0.2, 0.0, seed=5)
    assert exact <= ALPHA
    assert abs(empirical - exact) <= 0.015


def test_mcnemar_power_equals_brute_force_enumeration():
    for n, psi, d in [(30, 0.3, 0.1), (25, 0.5, -0.2), (12, 0.4, 0.4), (40, 0.1, 0.0)]:
        assert mcnemar_power(n, psi, d) == pytest.approx(brute_force_power(n, psi, d), abs=1e-10)


def test_critical_counts_give_the_largest_rejected_count():
    m = np.arange(0, 400)
    k = critical_counts(m, ALPHA)
    for mi, ki in zip(m, k):
        if ki >= 0:
            assert 2 * binom.cdf(ki, mi, 0.5) < ALPHA
        assert 2 * binom.cdf(ki + 1, mi, 0.5) >= ALPHA
    assert k[5] == -1 and k[6] == 0  # 2 / 2^6 = 0.031 is the first p-value under 0.05


def test_power_size_and_monotonicity():
    for n in (6, 20, 112, 1000, 10_000):
        for psi in (0.02, 0.15, 0.6, 1.0):
            assert mcnemar_power(n, psi, 0.0) <= ALPHA
    # power rises with the change at fixed n (what the MDE's bisection relies on) ...
    for n, psi in [(112, 0.15), (60, 0.10), (30, 0.9)]:
        powers = [mcnemar_power(n, max(psi, d), d) for d in np.linspace(0, 1, 201)]
        assert np.all(np.diff(powers) >= -1e-12)
    # ... and is symmetric in its sign
    assert mcnemar_power(112, 0.15, -0.08) == pytest.approx(mcnemar_power(112, 0.15, 0.08), abs=1e-12)


def test_mde_is_the_smallest_change_at_the_target_and_shrinks_with_n():
    d = mde_mcnemar(112, 0.15)
    assert mcnemar_power(112, 0.15, d) >= 0.8 > mcnemar_power(112, 0.15, d * 0.999)
    mdes = [mde_mcnemar(n, 0.15) for n in (50, 112, 500, 2000, 10_000)]
    assert all(a > b for a, b in zip(mdes, mdes[1:]))
    assert mde_mcnemar(5, 0.5) is None  # 2 / 2^5 > 0.05: five examples can never reject
    assert mde_mcnemar(6, 0.5) is not None
    # the exact test is somewhat more demanding than Connor's normal approximation
    connor = n_for_mcnemar_normal(0.05, 0.15)
    assert connor <= n_for_mcnemar(0.05, 0.15) <= 1.15 * connor


def test_mde_runs_fast_at_ten_thousand_examples():
    import time

    start = time.perf_counter()
    mcnemar_power(10_000, 0.15, 0.02)
    one = time.perf_counter() - start
    d = mde_mcnemar(10_000, 0.15)
    assert one < 0.5
    assert 0.005 < d < 0.02


def test_n_for_mcnemar_holds_across_a_sawtooth():
    # discordance 1: M = n exactly, so the power dips as n grows; the answer must not sit on a peak
    n = n_for_mcnemar(0.2, 1.0)
    window = range(n, n + max(1, math.ceil(0.02 * n)) + 1)
    assert all(mcnemar_power(k, 1.0, 0.2) >= 0.8 for k in window)


def test_continuous_mde_rejects_at_the_stated_power_with_the_paired_bootstrap():
    n, sd = 100, 0.3
    d = mde_mean(sd / math.sqrt(n))
    rng = np.random.default_rng(6)
    rejected = 0
    for seed in range(SIMULATIONS):
        base = rng.uniform(0.2, 0.8, size=n)
        tuned = base + rng.normal(d, sd, size=n)
        rejected += paired_bootstrap(tuned, base, n_resamples=1000, seed=seed)["p_value"] < ALPHA
    empirical = rejected / SIMULATIONS
    print(f"n={n} sd={sd} d={d:.4f} empirical={empirical:.4f}")
    assert d == pytest.approx((1.959964 + 0.841621) * 0.03, rel=1e-5)
    assert abs(empirical - 0.8) <= 0.05


def test_n_for_mean_inverts_mde_mean():
    n = n_for_mean(0.05, 0.3)
    assert n == 283
    assert mde_mean(0.3 / math.sqrt(n)) <= 0.05 < mde_mean(0.3 / math.sqrt(n - 1))


def test_describe_mde_in_points():
    assert describe_mde(0.10413) == "this test could see changes of >= 10.4 points"
    assert describe_mde(0.0109) == "this test could see changes of >= 1.09 points"
    assert describe_mde(2.2409, scale="0-100") == "this test could see changes of >= 2.24 points"
    assert "could not" in describe_mde(None)


def test_bad_inputs_raise():
    with pytest.raises(MetricInputError, match="discordance"):
        mde_mcnemar(100, -0.1)
    with pytest.raises(MetricInputError, match="exceeds the discordance"):
        mcnemar_power(100, 0.1, 0.2)
    with pytest.raises(MetricInputError, match="power"):
        n_for_mcnemar(0.05, 0.15, power=1.0)
    with pytest.raises(MetricInputError, match="sd"):
        n_for_mean(0.05, 0.0)


def test_cli_prints_the_mde_and_the_n(tmp_path):
    done = subprocess.run(TUNELAB + ["power", "--n", "112", "--discordance", "0.15"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "could see changes of >= 10.4 points" in done.stdout
    done = subprocess.run(TUNELAB + ["power", "--drop", "0.05", "--discordance", "0.15", "--json"],
                          capture_output=True, text=True, timeout=120)
    result = json.loads(done.stdout)
    assert result["n"] == n_for_mcnemar(0.05, 0.15) and result["achieved_power"] >= 0.8


def test_cli_continuous_and_json(capsys):
    from tunelab.cli.main import main

    assert main(["power", "--n", "60", "--sd", "0.3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mde"] == pytest.approx(mde_mean(0.3 / math.sqrt(60)))
    assert main(["power", "--drop", "0.05", "--sd", "0.3"]) == 0
    assert "needs 283 examples" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--n", "112", "--discordance", "1.5"], "--discordance must be in (0, 1]"),
    (["--n", "0", "--discordance", "0.15"], "--n must be between"),
    (["--drop", "5", "--discordance", "0.15"], "--drop must be a non-zero share"),
    (["--n", "112"], "give --discordance"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, message):
    done = subprocess.run(TUNELAB + ["power", *argv], capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("tunelab: error: ") and message in lines[0]


def test_power_module_imports_no_torch():
    code = "import sys, tunelab.metrics.power; print('torch' in sys.modules or 'transformers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False"
