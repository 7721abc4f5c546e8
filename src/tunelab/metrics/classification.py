"""Classification metrics identical to scikit-learn, with outputs that could not be mapped to a label.

`y_pred[i] is None` means the model's output for record i could not be mapped to any label (see
tunelab.metrics.labels). Such a prediction is never guessed: it counts as wrong for accuracy and
recall, and sits in its own confusion-matrix column "<unmapped>". It is *not* a predicted positive
for any class, so it does not lower any class's precision. All numbers equal scikit-learn's
accuracy_score, precision_recall_fscore_support(labels=labels, average=...) and confusion_matrix
with the None predictions replaced by a label outside `labels` (tested).

zero_division (as scikit-learn's argument; default 0.0, its "warn" value without the warning):
precision of a class never predicted, recall of a class without gold examples and F1 when
2*tp + fp + fn == 0 take this value; with zero_division=nan the macro/weighted averages skip nan.
"""

from __future__ import annotations

import math

import numpy as np

from tunelab.metrics.errors import MetricInputError

UNMAPPED = "<unmapped>"


def _safe_divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(num.shape, zero_division, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _prf(tp, pred_sum, true_sum, zero_division):
    precision = _safe_divide(tp, pred_sum, zero_division)
    recall = _safe_divide(tp, true_sum, zero_division)
    fp, fn = pred_sum - tp, true_sum - tp
    f1 = _safe_divide(2 * tp, 2 * tp + fp + fn, zero_division)
    return precision, recall, f1


def _average(values: np.ndarray, weights: np.ndarray | None) -> float:
    # scikit-learn's _nanaverage: nan entries (zero_division=nan) are left out
    mask = ~np.isnan(values)
    if not mask.any():
        return float("nan")
    values = values[mask]
    if weights is None:
        return float(values.mean())
    weights = weights[mask]
    if weights.sum() == 0:  # as scikit-learn: all-zero weights -> the plain mean
        return float(values.mean())
    return float(np.average(values, weights=weights))


def classification_report(
    y_true: list[str],
    y_pred: list[str | None],
    labels: list[str] | None = None,
    *,
    zero_division: float = 0.0,
) -> dict:
    """Accuracy, P/R/F1 (micro, macro, weighted, per class), confusion matrix, unmapped count.

    labels: the class labels in report order; default: sorted labels seen in y_true and y_pred.
    Gold labels must be in `labels`; predictions must be in `labels` or None.
    """
    if len(y_true) != len(y_pred):
        raise MetricInputError(f"{len(y_true)} gold labels but {len(y_pred)} predictions")
    if not all(isinstance(y, str) for y in y_true):
        raise MetricInputError("gold labels must all be strings")
    if not all(p is None or isinstance(p, str) for p in y_pred):
        raise MetricInputError("predictions must be strings or None (unmapped)")
    if labels is None:
        labels = sorted(set(y_true) | {p for p in y_pred if p is not None})
    labels = list(labels)
    if len(set(labels)) != len(labels):
        raise MetricInputError(f"labels contain duplicates: {labels}")
    index = {label: k for k, label in enumerate(labels)}
    n_labels = len(labels)

    unknown_gold = sorted(set(y_true) - index.keys())
    if unknown_gold:
        raise MetricInputError(f"gold labels not in the label set {labels}: {unknown_gold[:5]}")
    unknown_pred = sorted({p for p in y_pred if p is not None} - index.keys())
    if unknown_pred:
        raise MetricInputError(
            f"predictions not in the label set {labels}: {unknown_pred[:5]} "
            "(map free text with tunelab.metrics.labels.extract_label; unmappable -> None)"
        )

    true_idx = np.array([index[y] for y in y_true], dtype=np.int64)
    pred_idx = np.array([n_labels if p is None else index[p] for p in y_pred], dtype=np.int64)
    n = len(true_idx)
    # rows: gold label; columns: predicted label, then the <unmapped> column
    matrix = np.bincount(true_idx * (n_labels + 1) + pred_idx, minlength=n_labels * (n_labels + 1))
    matrix = matrix.reshape(n_labels, n_labels + 1)

    tp = np.diag(matrix[:, :n_labels]).astype(float)
    pred_sum = matrix[:, :n_labels].sum(axis=0).astype(float)
    true_sum = matrix.sum(axis=1).astype(float)
    precision, recall, f1 = _prf(tp, pred_sum, true_sum, zero_division)
    micro_p, micro_r, micro_f = _prf(tp.sum(), pred_sum.sum(), true_sum.sum(), zero_division)

    def averaged(weights):
        return {
            "precision": _average(precision, weights),
            "recall": _average(recall, weights),
            "f1": _average(f1, weights),
        }

    n_unmapped = int(matrix[:, n_labels].sum())
    return {
        "n": n,
        "n_unmapped": n_unmapped,
        "unmapped_rate": n_unmapped / n if n else 0.0,
        "accuracy": float(tp.sum() / n) if n else float(zero_division),
        "labels": labels,
        "micro": {"precision": float(micro_p), "recall": float(micro_r), "f1": float(micro_f)},
        "macro": averaged(None),
        "weighted": averaged(true_sum),
        "per_class": {
            label: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(true_sum[k]),
            }
            for k, label in enumerate(labels)
        },
        "confusion_matrix": {
            "rows": labels,
            "columns": labels + [UNMAPPED],
            "matrix": matrix.tolist(),
        },
        "zero_division": zero_division if not math.isnan(zero_division) else "nan",
    }
