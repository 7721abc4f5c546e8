"""The comparison engine's rules: pairing by key, the test by metric, the sign, the held-out change
and the tuned task, each in one place (evaluate/comparison.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tunelab.evaluate.compare import improvement
from tunelab.evaluate.comparison import compare_metric, held_out_change, paired_keys, tuned_task


def rows(metric: str, values, keys=None) -> dict:
    keys = keys or [f"k{i}" for i in range(len(values))]
    return {k: {"key": k, "scores": {metric: float(v)}} for k, v in zip(keys, values)}


def test_rows_are_paired_by_key_not_by_position():
    a = rows("token_f1", [0.9, 0.1, 0.5], keys=["x", "y", "z"])
    b = rows("token_f1", [0.5, 0.1, 0.9, 0.3], keys=["z", "y", "x", "w"])
    assert paired_keys(a, b) == ["x", "y", "z"]
    test = compare_metric("token_f1", [a], [b])
    assert test["n"] == 3 and test["diff"] == pytest.approx(0.0)  # x and z line up, whatever the order


def test_the_metric_chooses_the_test():
    rng = np.random.default_rng(0)
    binary = compare_metric("accuracy", [rows("accuracy", rng.integers(0, 2, 50))], [rows("accuracy", rng.integers(0, 2, 50))])
    assert binary["test"] == "exact McNemar" and "mcnemar" in binary
    continuous = compare_metric("token_f1", [rows("token_f1", rng.random(50))], [rows("token_f1", rng.random(50))])
    assert continuous["test"] == "paired bootstrap (percentile)" and continuous["mde"] > 0
    seeded = compare_metric("token_f1", [rows("token_f1", rng.random(50)) for _ in range(3)],
                            [rows("token_f1", rng.random(50))])
    assert seeded["test"].startswith("seeds") and len(seeded["per_seed_diffs"]) == 3


def test_lower_is_better_turns_into_an_improvement():
    """token NLL fell by 0.5: the difference is -0.5, the improvement +0.5 with its CI flipped."""
    def nll_rows(values):  # a corpus statistic: summed NLL over summed tokens (one token each here)
        return {f"k{i}": {"key": f"k{i}", "scores": {"token_nll": v, "perplexity_statistics": [v, 1.0, 4.0]}}
                for i, v in enumerate(values)}

    base = nll_rows([2.0, 2.5, 3.0, 2.2, 2.8, 2.6])
    tuned = nll_rows([1.4, 2.1, 2.4, 1.8, 2.3, 2.0])
    test = compare_metric("token_nll", [tuned], [base])
    assert test["higher_is_better"] is False and test["diff"] < 0 < test["improvement"]
    assert test["improvement"] == pytest.approx(-test["diff"])
    assert test["improvement_ci"] == sorted(-x for x in test["ci"])
    shown = improvement(test)
    assert shown["diff"] == test["improvement"] and shown["ci"] == test["improvement_ci"]


def test_held_out_change_has_one_definition():
    """Mean improvement on a 0-1 scale over held-out tasks: BLEU divided by 100, NLL listed apart,
    the tuned task and trained-on tasks left out."""
    tests = [{"task": "tuned", "metric": "accuracy", "improvement": 0.30, "p_value": 0.001},
             {"task": "qa", "metric": "token_f1", "improvement": -0.04, "p_value": 0.2},
             {"task": "mt", "metric": "bleu", "scale": "0-100", "improvement": -2.0, "p_value": 0.01},
             {"task": "ppl", "metric": "token_nll", "higher_is_better": False, "improvement": 0.3, "p_value": 0.5},
             {"task": "mixed_in", "metric": "accuracy", "improvement": 0.5, "p_value": 0.001}]
    summary = held_out_change(tests, "tuned", trained={"mixed_in"})
    assert summary["held_out_change"] == pytest.approx((-0.04 - 0.02) / 2)
    assert summary["held_out_change_tasks"] == ["qa", "mt"] and summary["held_out_unaveraged"] == ["ppl"]
    assert summary["significant_drops"] == ["mt"] and "mixed_in" not in summary["held_out_tasks"]


def test_tuned_task_rule():
    common = ["sentiment", "qa"]
    assert tuned_task([None, {"sentiment"}, {"sentiment", "qa"}], common) == "sentiment"
    assert tuned_task([None, {"sentiment", "qa"}], common) is None  # two candidates: not guessed
    assert tuned_task([None, {"sentiment"}], common, given="qa") == "qa"
    assert tuned_task([None, None], common) is None
