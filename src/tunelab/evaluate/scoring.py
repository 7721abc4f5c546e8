"""Model outputs -> metrics: per-example scores, corpus values with CIs, and paired differences.

Every number comes from a scoring unit of tunelab.metrics (units.py for generated text,
loglikelihood.py for log-likelihoods), chosen through the one vocabulary (metrics/vocabulary.py):
a task's metric names are the keys results.json reports, and each key names the unit that
computes it. Generated text goes through the units `tunelab score` runs, so a number from `eval`
equals the one `tunelab score` gives on the same predictions. Every CI is a percentile bootstrap
with exactly the requested number of resamples (seed 0).

Two kinds of corpus number (their paired differences: evaluate/comparison.py):
- means over examples (accuracy, exact match, token F1, ROUGE F1, acc, acc_norm, reward_accuracy,
  reward_margin);
- corpus statistics (BLEU, chrF, macro-F1, perplexity, bits per byte, token NLL): each is a
  function of per-example statistics summed over the corpus (`statistic_of` gives both), so a
  paired difference and its CI are always the same statistic.
"""

from __future__ import annotations

import math

import numpy as np

from tunelab.metrics import bootstrap_ci
from tunelab.metrics.loglikelihood import MultipleChoice, Perplexity, Preference
from tunelab.metrics.stats import bootstrap_statistic, percentile_interval
from tunelab.metrics.vocabulary import key as metric_key
from tunelab.metrics.vocabulary import units_for

# The order of the per-example scores in <task>.examples.jsonl, kept as it has always been.
EXAMPLE_ORDER = ("rouge", "exact_match", "token_f1", "bleu", "chrf", "classification")


def _entry(value: float, ci, n: int, **extra) -> dict:
    return {"value": float(value), "ci": None if ci is None else [float(ci[0]), float(ci[1])], "n": n, **extra}


def _mean_metric(values, n_resamples: int, confidence: float) -> dict:
    arr = np.asarray(values, dtype=float)
    ci = bootstrap_ci(arr, n_resamples=n_resamples, confidence=confidence) if n_resamples and len(arr) else None
    return _entry(arr.mean() if len(arr) else math.nan, ci, len(arr))


def score_generations(records: list[dict], metrics: list[str], labels: list[str] | None = None,
                      label_synonyms: dict | None = None, n_resamples: int = 1000,
                      confidence: float = 0.95) -> tuple[dict, list[dict]]:
    """records: {"prediction", "references", "label"} -> (corpus metrics, per-example scores + statistics)."""
    from tunelab.metrics.base import Bootstrap
    from tunelab.metrics.errors import MetricInputError
    from tunelab.metrics.score import score_units, validate_records
    from tunelab.metrics.units import UNITS

    wanted = {unit: keys for unit, keys in units_for(metrics).items() if unit in EXAMPLE_ORDER}
    classify = "classification" in wanted
    if classify and not labels:
        raise ValueError("accuracy needs the task's labels")
    verbalizers = {lab: list((label_synonyms or {}).get(lab, [])) for lab in labels} if labels else None
    settings = {"rouge": {"types": wanted.get("rouge")}, "classification": {"labels": verbalizers}}
    units = [UNITS[name](**settings.get(name, {})) for name in wanted]
    if not records:
        raise MetricInputError("<records>: no records")
    scored = [{"prediction": r["prediction"], "references": list(r["references"]) or [""],
               **({"label": r["label"]} if classify else {})} for r in records]
    checked = validate_records(scored, list(wanted))
    results = dict(zip(wanted, score_units(checked, units, Bootstrap(n_resamples, 0, confidence))))
    n = len(records)
    corpus, per = {}, [dict() for _ in records]
    for unit in sorted(units, key=lambda u: EXAMPLE_ORDER.index(u.name)):
        result = results[unit.name]
        for name in unit.keys():
            value, ci, extra = unit.headline(name, result)
            corpus[name] = _entry(value, ci, n, **extra)
        for i, p in enumerate(per):
            p.update(unit.example_fields(result, i))
    return {m: corpus[m] for m in [*metrics, "macro_f1", "unmapped"] if m in corpus}, per


def score_choices(records: list[dict], metrics: list[str], n_resamples: int = 1000,
                  confidence: float = 0.95) -> tuple[dict, list[dict]]:
    """records: {"logprobs": [...], "choices": [...], "answer_index"} -> acc, acc_norm, acc_bytes
    (metrics/loglikelihood.py), each a mean over examples."""
    per = [MultipleChoice().per_record(r) for r in records]
    corpus = {m: _mean_metric([p[m] for p in per], n_resamples, confidence) for m in metrics}
    return corpus, per


def score_preference(records: list[dict], metrics: list[str], n_resamples: int = 1000,
                     confidence: float = 0.95) -> tuple[dict, list[dict]]:
    """records: {"logp_chosen", "logp_rejected"} -> reward_accuracy, reward_margin
    (metrics/loglikelihood.py), each a mean over pairs."""
    per = [Preference().per_record(r) for r in records]
    corpus = {m: _mean_metric([p[m] for p in per], n_resamples, confidence) for m in metrics}
    if "reward_margin" in corpus:
        corpus["reward_margin"]["note"] = "mean log P(chosen) - log P(rejected), nats (higher is better)"
    return corpus, per


def score_perplexity(records: list[dict], metrics: list[str], n_resamples: int = 1000,
                     confidence: float = 0.95) -> tuple[dict, list[dict]]:
    """records: {"logprob", "n_tokens", "n_bytes"} -> token-weighted token NLL, perplexity, bits per byte."""
    unit = Perplexity()
    stats = unit.statistics(records)
    per = [{"token_nll": float(a / b), "nll": float(a), "n_tokens": int(b), "perplexity_statistics": [a, b, c]}
           for a, b, c in stats.tolist()]
    corpus = {}
    for m in metrics:
        fn = unit.corpus_fn(m)
        ci = None
        if n_resamples:
            ci = percentile_interval(np.asarray(bootstrap_statistic(stats, fn, n_resamples=n_resamples)), confidence)
        corpus[m] = _entry(fn(stats.sum(axis=0)), ci, len(records),
                           note="token-weighted over all answer tokens (lower is better)")
    return corpus, per


def statistic_of(metric: str, rows: list[dict], labels: list[str] | None):
    """(per-example statistics, corpus fn) for a corpus-statistic metric, or None for a mean metric.

    The statistics are the ones the examples file stores ("<unit>_statistics"; macro-F1's are
    recounted from the mapped labels), the corpus fn is the unit's, with the unit's defaults."""
    from tunelab.metrics.units import UNITS, Chrf, Classification

    found = metric_key(metric)
    if found is None or not found.statistic:
        return None
    if found.unit == "classification":
        from tunelab.metrics.classification import classification_statistics

        stats = classification_statistics([r["label"] for r in rows],
                                          [r["scores"].get("predicted_label") for r in rows], labels)
        return stats, Classification(labels=labels).corpus_fn(metric)
    stats = np.asarray([r["scores"][f"{found.unit}_statistics"] for r in rows], dtype=float)
    if found.unit == "chrf":  # chrF++ stores more columns: the word order follows from their number
        unit = Chrf(word_order=stats.shape[1] // 3 - Chrf.char_order)
    else:
        unit = {**UNITS, "perplexity": Perplexity}[found.unit]()
    return stats, unit.corpus_fn(metric)
