"""Mixture rates against the formulas on known numbers, and deterministic epochs."""

import math

import pytest

from tunelab.data.mixture import epoch_counts, epoch_order, mixture_rates

SIZES = {"a": 100, "b": 1000, "c": 10000}


def test_proportional_with_cap_is_t5_examples_proportional():
    rates = mixture_rates(SIZES, "proportional", cap=2000)
    # min(n, K) = 100, 1000, 2000; sum 3100
    assert rates == pytest.approx({"a": 100 / 3100, "b": 1000 / 3100, "c": 2000 / 3100}, abs=1e-12)
    assert rates["a"] == pytest.approx(0.0322580645, abs=1e-9)


def test_temperature_two_with_cap():
    rates = mixture_rates(SIZES, "temperature", cap=2000, temperature=2.0)
    denom = 10.0 + math.sqrt(1000) + math.sqrt(2000)  # 86.34...
    assert rates["a"] == pytest.approx(10.0 / denom, abs=1e-12)
    assert rates["b"] == pytest.approx(0.3662412, abs=1e-6)
    assert rates["c"] == pytest.approx(0.5179432, abs=1e-6)
    # T = 1 is examples-proportional; large T tends to equal
    assert mixture_rates(SIZES, "temperature", cap=2000, temperature=1.0) == pytest.approx(
        mixture_rates(SIZES, "proportional", cap=2000))
    assert mixture_rates(SIZES, "temperature", temperature=1e6)["a"] == pytest.approx(1 / 3, abs=1e-4)


def test_concat_equal_and_weights():
    assert mixture_rates(SIZES, "concat") == pytest.approx({"a": 100 / 11100, "b": 1000 / 11100, "c": 10000 / 11100})
    assert mixture_rates(SIZES, "equal") == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert mixture_rates(SIZES, "weights", weights={"a": 1, "b": 1, "c": 2}) == pytest.approx(
        {"a": 0.25, "b": 0.25, "c": 0.5})
    with pytest.raises(ValueError, match="weight for task"):
        mixture_rates(SIZES, "weights", weights={"a": 1})
    # an empty task gets no share
    assert mixture_rates({"a": 0, "b": 5}, "equal") == {"a": 0.0, "b": 1.0}


def test_epoch_counts_follow_rates_and_default_size():
    rates = mixture_rates(SIZES, "proportional", cap=2000)
    counts = epoch_counts(SIZES, rates, "proportional", cap=2000)
    assert sum(counts.values()) == 3100 and counts == {"a": 100, "b": 1000, "c": 2000}
    counts = epoch_counts(SIZES, rates, "proportional", cap=2000, epoch_size=1000)
    assert sum(counts.values()) == 1000
    for task, c in counts.items():
        assert abs(c - 1000 * rates[task]) < 1
    assert epoch_counts(SIZES, mixture_rates(SIZES, "concat"), "concat") == SIZES


def test_epoch_order_deterministic_and_downsampled_task_cycles_without_repeats():
    sizes = {"small": 10, "big": 50}
    counts = {"small": 10, "big": 20}
    first = epoch_order(sizes, counts, epoch=0, seed=3)
    assert first == epoch_order(sizes, counts, epoch=0, seed=3)
    assert first != epoch_order(sizes, counts, epoch=0, seed=4)
    assert first != epoch_order(sizes, counts, epoch=1, seed=3)
    # `big` is down-sampled to 20 per epoch: epochs 0, 1 and 2 (partly) cover all 50 before repeats
    seen = [i for e in (0, 1) for t, i in epoch_order(sizes, counts, e, 3) if t == "big"]
    assert len(seen) == 40 and len(set(seen)) == 40
    small = [i for t, i in first if t == "small"]
    assert sorted(small) == list(range(10))
