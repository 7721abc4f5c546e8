"""Mode "rouge-score": identical to Google's rouge-score 0.1.2 `RougeScorer.score_multi`.

rouge1..rouge9, rougeL (LCS of the whole token sequences) and rougeLsum (summary-level union LCS
over newline-separated sentences) reproduce rouge-score per record to the last bit: the same
integer counts and the same float operations (p = hits / max(n, 1), f = 2*p*r / (p + r)).
With several references, every reference is scored and, per type, the one with the highest F is
kept (first on ties), as `score_multi` does. A record without references scores 0.

rougeW-<w>, rougeS<d>/rougeS*, rougeSU<d>/rougeSU* (not in rouge-score) use the same tokens and
ROUGE-1.5.5's formulas without its 5-decimal rounding: W as in `wlcs` over newline-separated
sentences, R = (hit/base**w)**(1/w) with base = sum of sentence len**w (the perl script's double
weighting, kept so both modes agree), P = (hit/len(pred)**w)**(1/w), F = 2PR/(P+R).
"""

from __future__ import annotations

import numpy as np

from tunelab.metrics.rouge import pairs as P
from tunelab.metrics.rouge.tokenize import tokenize_corpus
from tunelab.metrics.rouge.types import parse_type


def _fmeasure(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    den = p + r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * p * r / np.where(den > 0, den, 1), 0.0)


def _ratio(hit, count) -> np.ndarray:
    return np.asarray(hit, dtype=np.float64) / np.maximum(count, 1)


def _scores(pairs: P.Pairs, rtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, fmeasure) per pair."""
    pred_len, ref_len = pairs.lengths()
    empty = (pred_len == 0) | (ref_len == 0)
    if rtype.kind == "N":
        hit, pc, rc = P.ngram(pairs, rtype.n)
        p, r = _ratio(hit, pc), _ratio(hit, rc)
    elif rtype.kind in ("L", "Lsum"):
        hit, pc, rc = P.lcs_whole(pairs) if rtype.kind == "L" else P.union_lcs_hits(pairs)
        p, r = _ratio(hit, pc), _ratio(hit, rc)
        p, r = np.where(empty, 0.0, p), np.where(empty, 0.0, r)
    elif rtype.kind == "S":
        hit, pc, rc = P.skip_bigram(pairs, rtype.gap, rtype.unigrams)
        p, r = _ratio(hit, pc), _ratio(hit, rc)
    else:  # W
        hit, base, pc = P.wlcs(pairs, rtype.weight)
        w = rtype.weight
        with np.errstate(invalid="ignore", divide="ignore"):
            # ROUGE-1.5.5 weights the reference base twice: (sum of len**w)**w.
            bw = base**w
            r = np.where(base > 0, (hit / np.where(base > 0, bw, 1)) ** (1 / w), 0.0)
            pw = pc.astype(np.float64) ** w
            p = np.where(pc > 0, (hit / np.where(pc > 0, pw, 1)) ** (1 / w), 0.0)
    return p, r, _fmeasure(p, r)


def score_arrays(predictions, references, rouge_types, use_stemmer=False, tokenizer="default") -> dict:
    """{type name: (precision, recall, fmeasure) arrays, one value per record}."""
    types = [parse_type(t) for t in rouge_types]
    n_refs = np.array([len(refs) for refs in references], dtype=np.int64)
    flat_refs = [ref for refs in references for ref in refs]
    corpus = tokenize_corpus(list(predictions) + flat_refs, use_stemmer, tokenizer)
    n_rec = len(predictions)
    pred_text = np.repeat(np.arange(n_rec), n_refs)
    pairs = P.Pairs(corpus, pred_text, n_rec + np.arange(len(flat_refs)))
    # First pair of each record; per type, the pair with the best F (first on ties).
    first = np.cumsum(n_refs) - n_refs
    has = n_refs > 0  # a record without references scores 0
    out = {}
    for rtype in types:
        p, r, f = _scores(pairs, rtype)
        best = first.copy()
        for rec in np.flatnonzero(n_refs > 1).tolist():
            best[rec] = first[rec] + int(np.argmax(f[first[rec] : first[rec] + n_refs[rec]]))
        at = np.minimum(best, max(len(p) - 1, 0))
        out[rtype.name] = tuple(np.where(has, a[at], 0.0) if len(a) else np.zeros(n_rec) for a in (p, r, f))
    return out

