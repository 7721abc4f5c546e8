"""Classification metrics: differential tests against scikit-learn on seeded random labels."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from tunelab.metrics.classification import UNMAPPED, classification_report
from tunelab.metrics.errors import MetricInputError


def _random_labels(seed, n, labels, p_unmapped):
    rng = random.Random(seed)
    # "rare" is in the label set but never gold; "never" is gold but never predicted
    gold_choices = [l for l in labels if l != "rare"]
    pred_choices = [l for l in labels if l != "never"]
    y_true = [rng.choice(gold_choices) for _ in range(n)]
    y_pred = []
    for y in y_true:
        r = rng.random()
        y_pred.append(None if r < p_unmapped else y if r < 0.6 else rng.choice(pred_choices))
    return y_true, y_pred


def _close(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


@pytest.mark.parametrize("zero_division", [0.0, 1.0, float("nan")])
@pytest.mark.parametrize("seed,n,p_unmapped", [(0, 3000, 0.1), (1, 2000, 0.0), (2, 40, 0.5), (3, 5, 0.4)])
def test_identical_to_sklearn(seed, n, p_unmapped, zero_division):
    labels = ["positive", "negative", "neutral", "rare", "never", "Ünïcode 東京"]
    y_true, y_pred = _random_labels(seed, n, labels, p_unmapped)
    ours = classification_report(y_true, y_pred, labels, zero_division=zero_division)
    sk_pred = [UNMAPPED if p is None else p for p in y_pred]
    assert ours["n"] == n and ours["n_unmapped"] == sum(p is None for p in y_pred)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y_true, sk_pred), abs=1e-12)
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, sk_pred, labels=labels, average=average, zero_division=zero_division
        )
        got = ours[average]
        assert _close(got["precision"], p) and _close(got["recall"], r) and _close(got["f1"], f), average
    p, r, f, s = precision_recall_fscore_support(y_true, sk_pred, labels=labels, average=None, zero_division=zero_division)
    for k, label in enumerate(labels):
        got = ours["per_class"][label]
        assert _close(got["precision"], p[k]) and _close(got["recall"], r[k]) and _close(got["f1"], f[k])
        assert got["support"] == s[k]
    cm = confusion_matrix(y_true, sk_pred, labels=labels + [UNMAPPED])
    assert np.array_equal(np.array(ours["confusion_matrix"]["matrix"]), cm[: len(labels)])
    assert ours["confusion_matrix"]["columns"][-1] == UNMAPPED


def test_unmapped_outputs_are_visible_and_counted_wrong():
    # the "before fine-tuning the model answers with sentences" case
    y_true = ["pos", "neg", "pos", "neg"]
    y_pred = ["pos", None, None, "neg"]
    report = classification_report(y_true, y_pred, ["pos", "neg"])
    assert report["n_unmapped"] == 2 and report["unmapped_rate"] == 0.5
    assert report["accuracy"] == 0.5
    assert report["per_class"]["pos"]["recall"] == 0.5
    assert report["per_class"]["pos"]["precision"] == 1.0  # an unmapped output is not a "pos" guess
    assert report["confusion_matrix"]["matrix"] == [[1, 0, 1], [0, 1, 1]]


def test_default_labels_and_errors():
    report = classification_report(["b", "a"], ["a", "a"])
    assert report["labels"] == ["a", "b"] and report["accuracy"] == 0.5
    with pytest.raises(MetricInputError, match="gold labels not in the label set"):
        classification_report(["c"], ["a"], ["a", "b"])
    with pytest.raises(MetricInputError, match="predictions not in the label set"):
        classification_report(["a"], ["I think a"], ["a", "b"])
    with pytest.raises(MetricInputError, match="1 gold labels but 2"):
        classification_report(["a"], ["a", "b"])
