"""Per (prediction, reference) pair hit counts for every ROUGE family, vectorised over pairs.

Both modes build on these: a `Pairs` holds the tokenized corpus and which texts form each pair;
each function returns numpy arrays (hit, reference count, prediction count) in ROUGE-1.5.5's
terms ("model" = reference, "peer" = prediction).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from tunelab.metrics.rouge.lcs import lcs_lengths, union_lcs
from tunelab.metrics.rouge.ngrams import LocalTokens, ranges
from tunelab.metrics.rouge.tokenize import Corpus
from tunelab.metrics.rouge.wlcs import wlcs_hits


@dataclass
class Pairs:
    corpus: Corpus
    pred_text: np.ndarray  # text index of each pair's prediction
    ref_text: np.ndarray  # text index of each pair's reference (each reference text in one pair)
    cache: dict = field(default_factory=dict)

    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def local(self) -> LocalTokens:
        with self.lock:  # scorers in several threads share one layout, built once
            if "local" not in self.cache:
                c = self.corpus
                self.cache["local"] = LocalTokens(c.ids, c.text_start, self.pred_text, self.ref_text)
        return self.cache["local"]

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
    """(clipped n-gram overlap, #pred n-grams, #ref n-grams) per pair."""
    pred_len, ref_len = pairs.lengths()
    hits = pairs.local.gram_overlap(n)
    return hits, np.maximum(pred_len - n + 1, 0), np.maximum(ref_len - n + 1, 0)


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
    lt = pairs.local
    return lt.unigram_overlap(ref_keep=keep[lt.ref_idx]), pred_len, ref_len


def skip_bigram(pairs: Pairs, gap: int, unigrams: bool):
    """ROUGE-1.5.5 createSkipBigram: pairs (i, j), i < j <= i + gap + 1 (gap < 0: any j), plus with
    SU the unigrams of all tokens but the last (as the perl script counts them)."""
    pred_len, ref_len = pairs.lengths()
    max_len = int(max(pred_len.max(initial=0), ref_len.max(initial=0)))
    max_d = max_len - 1 if gap < 0 else min(gap + 1, max(max_len - 1, 0))
    key = ("skip", max_d)
    lt = pairs.local
    if key not in pairs.cache:
        pairs.cache[key] = lt.skip_overlap(range(1, max_d + 1))
    hits = pairs.cache[key]
    if unigrams:
        def not_last(first, length, pair):
            pos = np.arange(len(pair)) - first[pair]
            return pos < length[pair] - 1

        hits = hits + lt.unigram_overlap(
            not_last(lt.pred_first, lt.pred_len, lt.pred_pair),
            not_last(lt.ref_first, lt.ref_len, lt.ref_pair),
        )

    def count(tl):
        d_lim = tl - 1 if gap < 0 else np.minimum(gap + 1, np.maximum(tl - 1, 0))
        # sum over d = 1..d_lim of (tl - d)
        total = d_lim * tl - d_lim * (d_lim + 1) // 2
        return total + (np.maximum(tl - 1, 0) if unigrams else 0)

    return hits, count(pred_len), count(ref_len)


def wlcs(pairs: Pairs, weight: float, marked=None):
    """ROUGE-1.5.5 ROUGE-W: (hit, base, pred len) with base = sum over reference sentences of
    len**weight, hit accumulated exactly as the perl `wlcs` sub does (see wlcs.py)."""
    return wlcs_hits(pairs, weight, marked)



def lcs_lengths_only(pairs: Pairs):  # re-export for callers needing the plain LCS
    return lcs_whole(pairs)
