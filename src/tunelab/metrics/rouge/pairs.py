"""Per (prediction, reference) pair hit counts for every ROUGE family, vectorised over pairs.

Both modes build on these: a `Pairs` holds the tokenized corpus and which texts form each pair;
each function returns numpy arrays (hit, reference count, prediction count) in ROUGE-1.5.5's
terms ("model" = reference, "peer" = prediction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tunelab.metrics.rouge.lcs import lcs_lengths, union_lcs
from tunelab.metrics.rouge.ngrams import clipped_overlap, ngram_overlap, ranges
from tunelab.metrics.rouge.tokenize import Corpus


@dataclass
class Pairs:
    corpus: Corpus
    pred_text: np.ndarray  # text index of each pair's prediction
    ref_text: np.ndarray  # text index of each pair's reference (each reference text in one pair)

    def __len__(self) -> int:
        return len(self.pred_text)

    def lengths(self):
        n = self.corpus.text_len
        return n[self.pred_text], n[self.ref_text]

    def sentences(self, text: np.ndarray):
        """(pair, start, length) of the sentences of `text[pair]`, sorted by pair."""
        c = self.corpus
        first, count = c.text_sent_start[text], np.diff(c.text_sent_start)[text]
        sent, pair = ranges(first, count)
        return pair, c.sent_start[sent], c.sent_len[sent]


def ngram(pairs: Pairs, n: int):
    c = pairs.corpus
    return ngram_overlap(c.ids, c.text_start, pairs.pred_text, pairs.ref_text, n)


def lcs_whole(pairs: Pairs):
    """LCS of the whole token sequences (rouge-score's rougeL): (lcs, pred len, ref len)."""
    c = pairs.corpus
    pred_len, ref_len = pairs.lengths()
    lcs = lcs_lengths(
        c.ids, c.text_start[pairs.ref_text], ref_len, c.text_start[pairs.pred_text], pred_len
    )
    return lcs, pred_len, ref_len


def union_lcs_hits(pairs: Pairs):
    """Summary-level union LCS (rouge-score's rougeLsum = ROUGE-1.5.5's ROUGE-L):
    hits = sum over tokens t of min(#reference positions of t on some sentence LCS, #t in pred)."""
    c = pairs.corpus
    pred_len, ref_len = pairs.lengths()
    seg_pair, seg_start, seg_len = pairs.sentences(pairs.ref_text)
    cand_pair, cand_start, cand_len = pairs.sentences(pairs.pred_text)
    picked = union_lcs(
        c.ids, seg_pair, seg_start, seg_len, cand_pair, cand_start, cand_len, len(pairs)
    )
    keep = np.zeros(len(c.ids), dtype=bool)
    keep[picked] = True
    hits, _, _ = ngram_overlap(c.ids, c.text_start, pairs.pred_text, pairs.ref_text, 1, keep)
    return hits, pred_len, ref_len


def skip_bigram(pairs: Pairs, gap: int, unigrams: bool):
    """ROUGE-1.5.5 createSkipBigram: pairs (i, j), i < j <= i + gap + 1 (gap < 0: any j), plus with
    SU the unigrams of all tokens but the last (as the perl script counts them)."""
    c = pairs.corpus
    ids, starts = c.ids, c.text_start
    lens = c.text_len
    vocab = int(ids.max(initial=0)) + 1
    max_len = int(lens.max(initial=0))
    max_d = max_len - 1 if gap < 0 else min(gap + 1, max(max_len - 1, 0))

    def grams(text):
        tl = lens[text]
        parts_pair, parts_gram = [], []
        for d in range(1, max_d + 1):
            idx, pair = ranges(starts[text], np.maximum(tl - d, 0))
            parts_pair.append(pair)
            parts_gram.append(ids[idx] * vocab + ids[idx + d])
        if unigrams:
            idx, pair = ranges(starts[text], np.maximum(tl - 1, 0))
            parts_pair.append(pair)
            parts_gram.append(vocab * vocab + ids[idx])
        if not parts_pair:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(parts_pair), np.concatenate(parts_gram)

    def count(tl):
        d_lim = tl - 1 if gap < 0 else np.minimum(gap + 1, np.maximum(tl - 1, 0))
        # sum over d = 1..d_lim of (tl - d)
        total = d_lim * tl - d_lim * (d_lim + 1) // 2
        return total + (np.maximum(tl - 1, 0) if unigrams else 0)

    pp, pg = grams(pairs.pred_text)
    rp, rg = grams(pairs.ref_text)
    hits = clipped_overlap(pp, pg, rp, rg, len(pairs))
    pred_len, ref_len = pairs.lengths()
    return hits, count(pred_len), count(ref_len)


def wlcs(pairs: Pairs, weight: float):
    """ROUGE-1.5.5 ROUGE-W: (hit, base, pred len) with base = sum over reference sentences of
    len**weight, hit accumulated exactly as the perl `wlcs` sub does (see wlcs.py)."""
    from tunelab.metrics.rouge.wlcs import wlcs_hits

    return wlcs_hits(pairs, weight)


def lcs_lengths_only(pairs: Pairs):  # re-export for callers needing the plain LCS
    return lcs_whole(pairs)
