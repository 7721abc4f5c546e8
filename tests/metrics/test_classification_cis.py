"""Macro / weighted classification scores from summed per-record statistics, and their bootstrap
CIs, against scikit-learn (point values, and a plain loop over the same resampled records)."""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from tunelab.metrics.classification import (
    CI_SCORES,
    UNMAPPED,
    classification_cis,
    classification_report,
    classification_statistics,
    macro_f1_score_fn,
    macro_scores_from_statistics,
)
from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.stats import bootstrap_ci

LABELS = ["positive", "negative", "neutral", "rare", "never"]


def _labels(seed, n, p_unmapped=0.15):
    """Gold never "rare", predictions never "never", some unmapped (None): every zero_division case."""
    rng = random.Random(seed)
    y_true = [rng.choice(["positive", "negative", "neutral", "never"]) for _ in range(n)]
    y_pred = []
    for y in y_true:
        r = rng.random()
        y_pred.append(None if r < p_unmapped else y if r < 0.55 else rng.choice(["positive", "negative", "rare"]))
    return y_true, y_pred


def _sk(y_pred):
    return [UNMAPPED if p is None else p for p in y_pred]


def test_statistics_layout():
    stats = classification_statistics(["a", "b", "b"], ["a", "a", None], ["a", "b"])
    # columns: tp_a tp_b | pred_a pred_b | true_a true_b
    assert stats.tolist() == [[1, 0, 1, 0, 1, 0], [0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 1]]
    with pytest.raises(MetricInputError, match="predictions not in the label set"):
        classification_statistics(["a"], ["c"], ["a", "b"])
    with pytest.raises(MetricInputError, match="expected 3 x 2 labels"):
        macro_scores_from_statistics(stats.sum(axis=0)[:5], 2)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, float("nan")])
@pytest.mark.parametrize("seed,n", [(0, 2000), (1, 37), (2, 4)])
def test_point_values_equal_report_and_sklearn(seed, n, zero_division):
    y_true, y_pred = _labels(seed, n)
    summed = classification_statistics(y_true, y_pred, LABELS).sum(axis=0)
    scores = macro_scores_from_statistics(summed, len(LABELS), zero_division=zero_division)
    ours = {k: float(v) for k, v in scores.items()}
    report = classification_report(y_true, y_pred, LABELS, zero_division=zero_division)
    expected = {"accuracy": report["accuracy"], **{f"{avg}_{m}": report[avg][m] for avg in ("macro", "weighted")
                                                   for m in ("precision", "recall", "f1")}}
    for key, value in expected.items():
        assert (math.isnan(value) and math.isnan(ours[key])) or ours[key] == value, key
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, _sk(y_pred), labels=LABELS, average=avg,
                                                     zero_division=zero_division)
        for key, theirs in ((f"{avg}_precision", p), (f"{avg}_recall", r), (f"{avg}_f1", f)):
            assert (math.isnan(theirs) and math.isnan(ours[key])) or ours[key] == pytest.approx(theirs, abs=1e-12)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_true, _sk(y_pred)), abs=1e-12)


def test_many_rows_at_once_equal_one_at_a_time():
    y_true, y_pred = _labels(3, 300)
    stats = classification_statistics(y_true, y_pred, LABELS)
    weights = np.random.default_rng(0).integers(0, 3, size=(25, len(stats))).astype(float)
    rows = macro_scores_from_statistics(weights @ stats, len(LABELS))
    assert all(values.shape == (25,) for values in rows.values())
    for r in range(25):
        one = macro_scores_from_statistics((weights @ stats)[r], len(LABELS))
        assert {k: float(v[r]) for k, v in rows.items()} == {k: float(v) for k, v in one.items()}
    assert macro_f1_score_fn(len(LABELS))(weights @ stats).tolist() == rows["macro_f1"].tolist()


def test_cis_equal_sklearn_on_the_same_resamples():
    """Resample r is rng.integers(0, n, size=n) (stats' stream); recompute every score with
    scikit-learn on those records and take the same percentiles."""
    y_true, y_pred = _labels(4, 240)
    n, n_resamples, seed = len(y_true), 150, 9
    cis = classification_cis(y_true, y_pred, LABELS, n_resamples, confidence=0.9, seed=seed)
    assert list(cis) == [f"{key}_ci" for key in CI_SCORES]
    rng = np.random.default_rng(seed)
    samples = {key: [] for key in CI_SCORES}
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        gold, pred = [y_true[i] for i in idx], _sk([y_pred[i] for i in idx])
        p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=LABELS, average="macro", zero_division=0)
        samples["macro_precision"].append(p)
        samples["macro_recall"].append(r)
        samples["macro_f1"].append(f1_score(gold, pred, labels=LABELS, average="macro", zero_division=0))
        samples["weighted_f1"].append(f1_score(gold, pred, labels=LABELS, average="weighted", zero_division=0))
        samples["accuracy"].append(accuracy_score(gold, pred))
    for key in CI_SCORES:
        expected = np.quantile(samples[key], [0.05, 0.95]).tolist()
        assert cis[f"{key}_ci"] == pytest.approx(expected, abs=1e-12), key
    correct = [float(p == g) for p, g in zip(y_pred, y_true)]
    assert cis["accuracy_ci"] == list(bootstrap_ci(correct, n_resamples, 0.9, seed))  # exactly


def test_ci_width_shrinks_with_n():
    widths = {}
    for n in (200, 20000):
        y_true, y_pred = _labels(5, n)
        cis = classification_cis(y_true, y_pred, LABELS, 300, seed=1)
        widths[n] = {key: hi - lo for key, (lo, hi) in cis.items()}
    for key in widths[200]:
        # about 1/sqrt(100) as wide; a factor 3 leaves room for the bootstrap's noise
        assert 0 < widths[20000][key] < widths[200][key] / 3, key


def test_bootstrap_is_fast():
    """1000 resamples of 10,000 records: one matrix product per block of resamples, no Python
    work per resample beyond the resample draw itself (best of 3 against a busy machine)."""
    y_true, y_pred = _labels(6, 10_000)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        classification_cis(y_true, y_pred, LABELS, 1000)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0
