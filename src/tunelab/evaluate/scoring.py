"""Model outputs -> metrics: per-example scores, corpus values with CIs, and paired differences.

Text metrics come from `tunelab.metrics.score.score_records`, the engine behind `tunelab score`:
one scorer, so a number from `eval` equals the one `tunelab score` gives on the same predictions.
Every CI is a percentile bootstrap with exactly the requested number of resamples (seed 0).

Two kinds of corpus number (their paired differences: evaluate/comparison.py):
- means over examples (accuracy, exact match, token F1, ROUGE F1, acc, acc_norm);
- corpus statistics (BLEU, chrF, macro-F1, perplexity, bits per byte, token NLL): each is a
  function of per-example statistics summed over the corpus (`statistic_of` gives both), so a
  paired difference and its CI are always the same statistic.
"""

from __future__ import annotations

import math

import numpy as np

from tunelab.metrics import bootstrap_ci
from tunelab.metrics.stats import bootstrap_statistic, percentile_interval

ROUGE_PREFIX = "rouge"


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
    from tunelab.metrics.score import score_records

    rouge_types = [m for m in metrics if m.startswith(ROUGE_PREFIX)]
    engine = [m for m in ("bleu", "chrf", "exact_match", "token_f1") if m in metrics]
    engine += ["rouge"] if rouge_types else []
    engine += ["classification"] if "accuracy" in metrics else []
    if "accuracy" in metrics and not labels:
        raise ValueError("accuracy needs the task's labels")
    verbalizers = {lab: list((label_synonyms or {}).get(lab, [])) for lab in labels} if labels else None
    scored = [{"prediction": r["prediction"], "references": list(r["references"]) or [""],
               **({"label": r["label"]} if "accuracy" in metrics else {})} for r in records]
    corpus_raw, per_raw = score_records(scored, engine, rouge_types=rouge_types or ("rougeL",), labels=verbalizers,
                                        bootstrap=n_resamples, confidence=confidence, _keep_statistics=True)
    kept = corpus_raw.pop("_kept")
    n = len(records)
    corpus, per = {}, [dict() for _ in records]
    for t in rouge_types:
        c = corpus_raw[t]
        corpus[t] = _entry(c["f1"], c.get("f1_ci"), n, signature=c["signature"], note="mean ROUGE F1 over examples")
        for p, r in zip(per, per_raw):
            p[t] = r[t]["f1"]
    for m in ("exact_match", "token_f1"):
        if m in metrics:
            corpus[m] = _entry(corpus_raw[m]["mean"], corpus_raw[m].get("ci"), n)
            for p, r in zip(per, per_raw):
                p[m] = r[m]
    for m in ("bleu", "chrf"):
        if m in metrics:
            c = corpus_raw[m]
            corpus[m] = _entry(c["score"], c.get("score_ci"), n, signature=c["signature"], scale="0-100",
                               note=f"corpus {m} on sacrebleu's 0-100 scale; per-example values are sentence {m}")
            statistics = kept[m][1]
            for p, r, s in zip(per, per_raw, statistics):
                p[m] = r[m]
                p[f"{m}_statistics"] = s.tolist()
    if "accuracy" in metrics:
        _classification(corpus, per, corpus_raw["classification"], per_raw, n)
    return {m: corpus[m] for m in [*metrics, "macro_f1", "unmapped"] if m in corpus}, per


def _classification(corpus: dict, per: list[dict], report: dict, per_raw: list[dict], n: int) -> None:
    corpus["accuracy"] = _entry(report["accuracy"], report.get("accuracy_ci"), n)
    corpus["macro_f1"] = _entry(report["macro"]["f1"], report.get("macro_f1_ci"), n,
                                note="macro-averaged F1 over the labels (unmapped answers count wrong)")
    unmapped = sum(r["classification"]["predicted"] is None for r in per_raw)
    corpus["unmapped"] = _entry(unmapped, None, n, higher_is_better=False,
                                note="generations that name no label (or several): counted as wrong")
    for p, r in zip(per, per_raw):
        entry = r["classification"]
        p.update(accuracy=float(entry["correct"]), predicted_label=entry["predicted"], label_reason=entry["reason"])


def score_choices(records: list[dict], metrics: list[str], n_resamples: int = 1000,
                  confidence: float = 0.95) -> tuple[dict, list[dict]]:
    """records: {"logprobs": [...], "choices": [...], "answer_index"} -> acc, acc_norm, acc_bytes.

    As lm-eval: acc = argmax of summed log-likelihood; acc_norm divides by the choice's length in
    characters, acc_bytes by its length in UTF-8 bytes.
    """
    per = []
    for r in records:
        lp = np.asarray(r["logprobs"], dtype=float)
        chars = np.asarray([len(c) for c in r["choices"]], dtype=float)
        nbytes = np.asarray([len(c.encode("utf-8")) for c in r["choices"]], dtype=float)
        gold = r["answer_index"]
        per.append({"acc": float(int(lp.argmax()) == gold),
                    "acc_norm": float(int((lp / np.maximum(chars, 1)).argmax()) == gold),
                    "acc_bytes": float(int((lp / np.maximum(nbytes, 1)).argmax()) == gold),
                    "predicted_index": int(lp.argmax())})
    corpus = {m: _mean_metric([p[m] for p in per], n_resamples, confidence) for m in metrics}
    return corpus, per


# Corpus statistics from per-example statistics summed over examples: (rows, k) -> (rows,).
def _perplexity(s):
    return np.exp(s[..., 0] / s[..., 1])


def _token_nll(s):
    return s[..., 0] / s[..., 1]


def _bits_per_byte(s):
    return s[..., 0] / (math.log(2) * s[..., 2])


PERPLEXITY_FNS = {"perplexity": _perplexity, "token_nll": _token_nll, "bits_per_byte": _bits_per_byte}


def score_perplexity(records: list[dict], metrics: list[str], n_resamples: int = 1000,
                     confidence: float = 0.95) -> tuple[dict, list[dict]]:
    """records: {"logprob", "n_tokens", "n_bytes"} -> token-weighted token NLL, perplexity, bits per byte."""
    stats = np.asarray([[-r["logprob"], r["n_tokens"], max(r["n_bytes"], 1)] for r in records], dtype=float)
    per = [{"token_nll": float(a / b), "nll": float(a), "n_tokens": int(b), "perplexity_statistics": [a, b, c]}
           for a, b, c in stats.tolist()]
    corpus = {}
    for m in metrics:
        fn = PERPLEXITY_FNS[m]
        ci = None
        if n_resamples:
            ci = percentile_interval(np.asarray(bootstrap_statistic(stats, fn, n_resamples=n_resamples)), confidence)
        corpus[m] = _entry(fn(stats.sum(axis=0)), ci, len(records),
                           note="token-weighted over all answer tokens (lower is better)")
    return corpus, per


def statistic_of(metric: str, rows: list[dict], labels: list[str] | None):
    """(per-example statistics, score_fn) for a corpus-statistic metric, or None for a mean metric."""
    if metric in ("bleu", "chrf"):
        from tunelab.metrics import bleu as B
        from tunelab.metrics import chrf as C

        stats = np.asarray([r["scores"][f"{metric}_statistics"] for r in rows], dtype=float)
        if metric == "bleu":
            return stats, lambda s: np.array([B.score_from_statistics(list(row)).score for row in s])
        order = stats.shape[1] // 3
        return stats, lambda s: np.array([C.f_score(list(row), order) for row in s])
    if metric in PERPLEXITY_FNS:
        return np.asarray([r["scores"]["perplexity_statistics"] for r in rows], dtype=float), PERPLEXITY_FNS[metric]
    if metric == "macro_f1":
        from tunelab.metrics.classification import classification_statistics, macro_f1_score_fn

        stats = classification_statistics([r["label"] for r in rows],
                                          [r["scores"].get("predicted_label") for r in rows], labels)
        return stats, macro_f1_score_fn(len(labels))
    return None
