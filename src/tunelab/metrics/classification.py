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

Macro / weighted scores are not means over records, so their bootstrap CIs and paired tests
resample per-record sufficient statistics (classification_statistics: one-hot tp / predicted /
gold per class), sum them and recompute the scores (macro_scores_from_statistics), vectorised
over all resamples at once (classification_cis).
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


def _label_indices(y_true, y_pred, labels) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Checked inputs as (labels, gold index per record, predicted index per record); an
    unmapped prediction (None) gets index len(labels)."""
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
    pred_idx = np.array([len(labels) if p is None else index[p] for p in y_pred], dtype=np.int64)
    return labels, true_idx, pred_idx


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
    labels, true_idx, pred_idx = _label_indices(y_true, y_pred, labels)
    n_labels = len(labels)
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


# --- corpus statistics for bootstrap CIs and paired tests of macro / weighted scores ------------

STATISTIC_SCORES = ("accuracy", "macro_precision", "macro_recall", "macro_f1",
                    "weighted_precision", "weighted_recall", "weighted_f1")
CI_SCORES = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_f1")


def classification_statistics(y_true, y_pred, labels=None) -> np.ndarray:
    """Per-record sufficient statistics: an (n, 3k) float array of 0/1 indicators in three blocks,
    columns [tp_0..tp_k-1 | pred_0..pred_k-1 | true_0..true_k-1] for the k labels in order.

    Summed over any multiset of records they are that subset's per-class tp, predicted and gold
    counts, from which macro_scores_from_statistics recomputes the macro / weighted scores: this
    is what makes a bootstrap of macro-F1 a matrix product instead of a report per resample.
    An unmapped prediction (None) is no class's prediction: it only adds to its gold class's
    count, as in classification_report. Inputs are checked as classification_report does."""
    labels, true_idx, pred_idx = _label_indices(y_true, y_pred, labels)
    k = len(labels)
    n = len(true_idx)
    stats = np.zeros((n, 3 * k), dtype=float)
    rows = np.arange(n)
    hit = pred_idx == true_idx
    stats[rows[hit], true_idx[hit]] = 1.0
    mapped = pred_idx < k
    stats[rows[mapped], k + pred_idx[mapped]] = 1.0
    stats[rows, 2 * k + true_idx] = 1.0
    return stats


def _average_rows(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    # _average along the last axis for many rows at once: nan entries (zero_division=nan) are
    # left out, all-nan rows give nan, all-zero weights fall back to the plain mean (as sklearn)
    keep = ~np.isnan(values)
    kept = np.where(keep, values, 0.0)
    plain = _safe_divide(kept.sum(axis=-1), keep.sum(axis=-1), float("nan"))
    if weights is None:
        return plain
    w = np.where(keep, weights, 0.0)
    total = w.sum(axis=-1)
    return np.where(total == 0, plain, _safe_divide((kept * w).sum(axis=-1), total, float("nan")))


def macro_scores_from_statistics(summed, n_labels: int, *, zero_division: float = 0.0) -> dict[str, np.ndarray]:
    """Accuracy and macro / weighted P, R, F1 from summed classification_statistics.

    summed: shape (3k,) or (R, 3k) (e.g. R bootstrap resamples); every value in the returned dict
    (keys STATISTIC_SCORES) has shape summed.shape[:-1]. Equal to classification_report's numbers
    for the same records, and so to scikit-learn's with the same zero_division."""
    summed = np.asarray(summed, dtype=float)
    k = int(n_labels)
    if k < 1 or summed.shape[-1] != 3 * k:
        raise MetricInputError(f"summed statistics have {summed.shape[-1]} columns; expected 3 x {n_labels} labels")
    tp, pred_sum, true_sum = summed[..., :k], summed[..., k : 2 * k], summed[..., 2 * k :]
    precision, recall, f1 = _prf(tp, pred_sum, true_sum, zero_division)
    out = {"accuracy": _safe_divide(tp.sum(axis=-1), true_sum.sum(axis=-1), zero_division)}
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"macro_{name}"] = _average_rows(values, None)
        out[f"weighted_{name}"] = _average_rows(values, true_sum)
    return {key: out[key] for key in STATISTIC_SCORES}


def macro_f1_score_fn(n_labels: int, zero_division: float = 0.0):
    """score_fn for stats.bootstrap_statistic / paired_bootstrap_statistic /
    approx_randomization_statistic over classification_statistics: summed (R, 3k) -> macro-F1 (R,)."""

    def macro_f1(summed: np.ndarray) -> np.ndarray:
        return macro_scores_from_statistics(summed, n_labels, zero_division=zero_division)["macro_f1"]

    return macro_f1


def classification_cis(y_true, y_pred, labels=None, n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0, *, zero_division: float = 0.0) -> dict[str, list[float]]:
    """Percentile bootstrap CIs {"accuracy_ci", "macro_precision_ci", "macro_recall_ci",
    "macro_f1_ci", "weighted_f1_ci"}: [lo, hi] each, all from the same resampled records
    (stats.bootstrap_statistic: the resamples bootstrap_ci draws with this seed), the scores of
    each resample recomputed from its summed classification_statistics. accuracy_ci equals
    bootstrap_ci over per-record correctness exactly (the same integer sums divided by n)."""
    from tunelab.metrics import stats as S

    S._check_confidence(confidence)
    statistics = classification_statistics(y_true, y_pred, labels)
    n_labels = statistics.shape[1] // 3

    def scores(summed: np.ndarray) -> np.ndarray:  # (rows, 3k) -> (rows, len(CI_SCORES))
        values = macro_scores_from_statistics(summed, n_labels, zero_division=zero_division)
        return np.stack([values[key] for key in CI_SCORES], axis=-1)

    samples = S.bootstrap_statistic(statistics, scores, n_resamples, seed)
    alpha = 1 - confidence
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2], axis=0)  # percentile_interval per column
    return {f"{key}_ci": [float(lo[j]), float(hi[j])] for j, key in enumerate(CI_SCORES)}


def score_classification(predictions, gold, labels, label_rule, where, bootstrap, confidence, seed):
    """score_records' classification metric: map free-form predictions to labels, report, CIs.

    Returns (report, per-record entries, tests for compare_records: {name: ("mean", per-record
    values) or ("statistic", per-record statistics, score_fn)}). where(i) names record i in error
    messages; bootstrap 0 = no CIs."""
    from tunelab.metrics.labels import Verbalizers, explain_label

    verbalizers = Verbalizers.build(labels if labels else sorted(set(gold)))
    label_list = list(verbalizers.labels)
    for i, g in enumerate(gold):
        if g not in verbalizers.labels:
            raise MetricInputError(f"{where(i)}: field 'label' is {g!r}, not one of the labels {label_list}")
    mapped = [explain_label(p, verbalizers, label_rule) for p in predictions]
    y_pred = [label for label, _ in mapped]
    report = classification_report(gold, y_pred, label_list)
    if bootstrap:
        # accuracy, macro P/R/F1 and weighted F1 from one pass over the same resamples as every
        # other CI; accuracy_ci is bootstrap_ci's over per-record correctness, exactly
        report.update(classification_cis(gold, y_pred, label_list, bootstrap, confidence, seed))
    reasons: dict[str, int] = {}
    for _, reason in mapped:
        reasons[reason] = reasons.get(reason, 0) + 1
    report["label_extraction"] = {"rule": label_rule, "by_reason": reasons}
    correct = np.array([p == g for p, g in zip(y_pred, gold)], dtype=float)
    # macro-F1 is not a mean over records: compare_records tests it from summed statistics
    kept = {"accuracy": ("mean", correct),
            "macro_f1": ("statistic", classification_statistics(gold, y_pred, label_list),
                         macro_f1_score_fn(len(label_list)))}
    entries = [{"label": g, "predicted": label, "correct": label == g, "reason": reason}
               for g, (label, reason) in zip(gold, mapped)]
    return report, entries, kept
