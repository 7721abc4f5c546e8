"""Turn model outputs into metrics: per-record scores, and corpus values with bootstrap CIs.

Every corpus number is a function of the per-record scores written to the examples JSONL, so
each can be traced (and recomputed) from the examples. Means get a percentile bootstrap CI
over records; perplexity and BLEU (ratios of sums) are bootstrapped as whole statistics.
"""

from __future__ import annotations

import math

import numpy as np

from tunelab.metrics import bootstrap_ci
from tunelab.metrics.stats import bootstrap_statistic, percentile_interval

LOWER_IS_BETTER = {"perplexity", "bits_per_byte", "token_nll"}
ROUGE_PREFIX = "rouge"


def _mean_metric(values: list[float], n_resamples: int, confidence: float) -> dict:
    arr = np.asarray(values, dtype=float)
    ci = bootstrap_ci(arr, n_resamples=n_resamples, confidence=confidence) if len(arr) else (math.nan, math.nan)
    return {"value": float(arr.mean()) if len(arr) else math.nan, "ci": [float(ci[0]), float(ci[1])], "n": len(arr)}


def score_generations(records: list[dict], metrics: list[str], labels: list[str] | None = None,
                      n_resamples: int = 1000, confidence: float = 0.95) -> tuple[dict, list[dict]]:
    """records: {"prediction", "references", "label"} -> (corpus metrics, per-record scores)."""
    per = [dict() for _ in records]
    corpus: dict = {}
    preds = [r["prediction"] for r in records]
    refs = [r["references"] for r in records]
    rouge_types = [m for m in metrics if m.startswith(ROUGE_PREFIX)]
    if rouge_types:
        from tunelab.metrics.rouge import rouge

        scores = rouge(preds, refs, rouge_types)
        for p, s in zip(per, scores):
            for t in rouge_types:
                p[t] = float(s[t].fmeasure)
    if "exact_match" in metrics:
        from tunelab.metrics.exact_match import exact_match

        for p, pred, ref in zip(per, preds, refs):
            p["exact_match"] = float(exact_match(pred, ref))
    if "token_f1" in metrics:
        from tunelab.metrics.token_f1 import token_f1

        for p, pred, ref in zip(per, preds, refs):
            p["token_f1"] = float(token_f1(pred, ref))
    if "accuracy" in metrics:
        from tunelab.metrics import classification_report, extract_label

        if not labels:
            raise ValueError("accuracy needs the task's labels")
        mapped = [extract_label(pred, labels) for pred in preds]
        for p, r, m in zip(per, records, mapped):
            p["predicted_label"] = m
            p["accuracy"] = float(m is not None and m == r["label"])
        report = classification_report([r["label"] for r in records], mapped, labels)
        corpus["macro_f1"] = {"value": float(report["macro"]["f1"]) if isinstance(report.get("macro"), dict)
                              else float(report.get("macro_f1", math.nan)), "ci": None, "n": len(records)}
        corpus["unmapped"] = {"value": int(sum(m is None for m in mapped)), "ci": None, "n": len(records),
                              "note": "generations that name no label (or several): counted as wrong",
                              "higher_is_better": False}
    if "bleu" in metrics:
        from tunelab.metrics.bleu import corpus_bleu, sentence_bleu

        for p, pred, ref in zip(per, preds, refs):
            p["bleu"] = float(sentence_bleu(pred, ref).score)
        value = float(corpus_bleu(preds, [list(r) for r in refs]).score) if records else math.nan
        idx = np.random.default_rng(0).integers(0, len(records), size=(min(n_resamples, 200), len(records)))
        samples = np.array([corpus_bleu([preds[i] for i in row], [list(refs[i]) for i in row]).score for row in idx])
        corpus["bleu"] = {"value": value, "ci": list(percentile_interval(samples, confidence)), "n": len(records),
                          "note": "corpus BLEU; per-record values are sentence BLEU"}
    for m in metrics:
        if m in ("bleu",):
            continue
        if m not in per[0] if per else True:
            if m not in corpus:
                raise ValueError(f"unknown generation metric '{m}'")
            continue
        corpus[m] = _mean_metric([p[m] for p in per], n_resamples, confidence)
    return corpus, per


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
    corpus = {}
    for m in metrics:
        if m not in ("acc", "acc_norm", "acc_bytes"):
            raise ValueError(f"unknown multiple-choice metric '{m}' (acc, acc_norm, acc_bytes)")
        corpus[m] = _mean_metric([p[m] for p in per], n_resamples, confidence)
    return corpus, per


def score_perplexity(records: list[dict], metrics: list[str], n_resamples: int = 1000,
                     confidence: float = 0.95) -> tuple[dict, list[dict]]:
    """records: {"logprob", "n_tokens", "n_bytes"} -> token-weighted perplexity and bits per byte."""
    nll = np.asarray([-r["logprob"] for r in records], dtype=float)
    tokens = np.asarray([r["n_tokens"] for r in records], dtype=float)
    nbytes = np.asarray([max(r["n_bytes"], 1) for r in records], dtype=float)
    per = [{"token_nll": float(a / b), "nll": float(a), "n_tokens": int(b)} for a, b in zip(nll, tokens)]
    stats = np.stack([nll, tokens, nbytes], axis=1)
    fns = {"perplexity": lambda s: np.exp(s[..., 0] / s[..., 1]),
           "bits_per_byte": lambda s: s[..., 0] / (math.log(2) * s[..., 2])}
    corpus = {}
    for m in metrics:
        if m not in fns:
            raise ValueError(f"unknown perplexity metric '{m}' (perplexity, bits_per_byte)")
        fn = fns[m]
        value = float(fn(stats.sum(axis=0)))
        samples = bootstrap_statistic(stats, lambda s, fn=fn: fn(s), n_resamples=n_resamples)
        corpus[m] = {"value": value, "ci": [float(x) for x in percentile_interval(np.asarray(samples), confidence)],
                     "n": len(records)}
    return corpus, per


def primary_metric(metrics: list[str]) -> str:
    """The metric a task is judged by in forgetting and compare tables: the first one asked for."""
    return metrics[0]


def per_record_key(metric: str) -> str:
    """Which per-record score pairs up for a metric's paired test."""
    return "token_nll" if metric in ("perplexity", "bits_per_byte") else metric


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER
