"""Clipped n-gram overlap for many (prediction, reference) pairs at once, in numpy.

overlap(pair) = sum over n-grams g of min(count_pred(g), count_ref(g)). Grams are counted with
np.bincount over small per-pair id spaces, never by sorting (pair, gram) keys (a sort is several
times slower here): a pair's tokens get pair-local ids, and only tokens present on both sides
("shared") can start or extend a common gram. Level n numbers the common (n-1)-grams of each pair
densely and bins an n-gram as (common (n-1)-gram, shared last token), so every level needs only
(#common (n-1)-grams x #shared tokens) bins per pair. No Python loop over pairs or tokens.
"""

from __future__ import annotations

import numpy as np


def ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated aranges [starts[i], starts[i]+lengths[i]) and, for each element, its i."""
    lengths = np.maximum(lengths, 0)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.cumsum(lengths) - lengths
    idx = np.arange(int(lengths.sum()), dtype=np.int64) - offsets[owner] + np.asarray(starts)[owner]
    return idx, owner


def argsort_keys(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 keys; packs (key, index) into one int64 and uses
    np.sort (SIMD quicksort), several times faster than a stable argsort, when it fits."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    index_bits = max(int(n - 1).bit_length(), 1)
    if int(keys.max()).bit_length() + index_bits <= 62 and keys.min() >= 0:
        packed = np.sort((keys << index_bits) | np.arange(n, dtype=np.int64))
        return packed & ((1 << index_bits) - 1)
    return np.argsort(keys, kind="stable")


def _segment_sums(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sums of consecutive segments of `values` with the given sizes (empty segments allowed)."""
    ends = np.cumsum(sizes)
    total = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return total[ends] - total[ends - sizes]


class LocalTokens:
    """Every token occurrence of each pair's prediction and reference, with a pair-local dense id
    (0 .. size[pair]-1) and a shared id (0 .. shared_size[pair]-1, -1 when the token is absent
    from the other side). Small per-pair id spaces let overlaps be counted with np.bincount over
    (pair, gram) bins instead of sorting (pair, gram) keys."""

    def __init__(self, ids, text_start, pred_text, ref_text):
        text_len = np.diff(text_start)
        n_pairs = len(pred_text)
        self.pred_len, self.ref_len = text_len[pred_text], text_len[ref_text]
        self.pred_idx, self.pred_pair = ranges(text_start[pred_text], self.pred_len)
        self.ref_idx, self.ref_pair = ranges(text_start[ref_text], self.ref_len)
        vocab = int(ids.max(initial=0)) + 1
        pair_of = np.concatenate([self.pred_pair, self.ref_pair])
        keys = pair_of * vocab + ids[np.concatenate([self.pred_idx, self.ref_idx])]
        order = argsort_keys(keys)
        sorted_keys = keys[order]
        new = np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])) if len(keys) else keys > 0
        pair_sorted = pair_of[order]
        self.size = np.bincount(pair_sorted[new], minlength=n_pairs)
        first_uid = np.cumsum(self.size) - self.size
        local = np.empty(len(keys), dtype=np.int64)
        local[order] = np.cumsum(new) - 1 - first_uid[pair_sorted]
        self.pred_local, self.ref_local = local[: len(self.pred_idx)], local[len(self.pred_idx) :]
        self.n_pairs = n_pairs
        # Every occurrence's bin (pair, local id) over all pairs, and how often each bin occurs.
        self.n_bins = int(self.size.sum())
        self.pred_bin = first_uid[self.pred_pair] + self.pred_local
        self.ref_bin = first_uid[self.ref_pair] + self.ref_local
        self.pred_count = np.bincount(self.pred_bin, minlength=self.n_bins)
        self.ref_count = np.bincount(self.ref_bin, minlength=self.n_bins)
        # Tokens present on both sides of a pair, renumbered densely: only they can form
        # common grams, so pair overlaps are counted over (#shared)^2 bins per pair.
        shared = (self.pred_count > 0) & (self.ref_count > 0)
        owner = np.repeat(np.arange(n_pairs), self.size)
        self.shared_size = np.bincount(owner[shared], minlength=n_pairs)
        rank = np.cumsum(shared) - 1 - (np.cumsum(self.shared_size) - self.shared_size)[owner]
        shared_id = np.where(shared, rank, -1)
        self.pred_shared = shared_id[self.pred_bin]
        self.ref_shared = shared_id[self.ref_bin]
        # Common-gram ids by level (gram_overlap): level 1 is the shared tokens themselves.
        self._levels = {1: (self.pred_shared, self.ref_shared, self.shared_size)}
        self.pred_first = np.cumsum(self.pred_len) - self.pred_len  # into pred_* arrays
        self.ref_first = np.cumsum(self.ref_len) - self.ref_len

    def unigram_overlap(self, pred_keep=None, ref_keep=None) -> np.ndarray:
        count_p = self.pred_count if pred_keep is None else np.bincount(self.pred_bin[pred_keep], minlength=self.n_bins)
        count_r = self.ref_count if ref_keep is None else np.bincount(self.ref_bin[ref_keep], minlength=self.n_bins)
        return _segment_sums(np.minimum(count_p, count_r), self.size)

    def _grams(self, side: str, head: np.ndarray, d: int):
        """Grams made of a head id at position i and the shared token at i + d (same text, both
        ids >= 0) on one side: (positions i, their pair, bin head * shared_size + last), pair-major.
        Contiguous slices of the flat token arrays, no gathers: a gram stays within its text
        when the pair ids at i and i + d agree (texts are contiguous, one per pair and side)."""
        pair, shared = getattr(self, f"{side}_pair"), getattr(self, f"{side}_shared")
        if d >= len(shared):
            z = np.zeros(0, dtype=np.int64)
            return z, z, z
        first, last = head[: len(shared) - d], shared[d:]
        ok = (first >= 0) & (last >= 0) & (pair[: len(pair) - d] == pair[d:])
        q = np.flatnonzero(ok)
        owner = pair[q]
        return q, owner, first[q] * self.shared_size[owner] + last[q]

    def gram_overlap(self, n: int) -> np.ndarray:
        """Clipped n-gram overlap per pair (n >= 1); levels are built once and cached."""
        if n == 1:
            return self.unigram_overlap()
        levels = self._levels
        for k in range(2, n + 1):
            if k in levels:
                continue
            p_head, r_head, size_prev = levels[k - 1]  # ids of the common (k-1)-grams by start
            pq, pp, pb = self._grams("pred", p_head, k - 1)
            rq, rp, rb = self._grams("ref", r_head, k - 1)
            overlap, (p_new, r_new, size) = _clip_count([(pp, pb)], [(rp, rb)], size_prev * self.shared_size, True)
            p_ids = np.full(len(self.pred_shared), -1, dtype=np.int64)
            r_ids = np.full(len(self.ref_shared), -1, dtype=np.int64)
            p_ids[pq], r_ids[rq] = p_new, r_new
            levels[k] = (p_ids, r_ids, size)
            levels[("overlap", k)] = overlap
        return levels[("overlap", n)]

    def skip_overlap(self, offsets) -> np.ndarray:
        """Clipped overlap of the ordered token pairs (t[i], t[i+d]) for d in offsets."""
        if not len(offsets):
            return np.zeros(self.n_pairs, dtype=np.int64)
        pred = [self._grams("pred", self.pred_shared, d)[1:] for d in offsets]
        ref = [self._grams("ref", self.ref_shared, d)[1:] for d in offsets]
        return _clip_count(pred, ref, self.shared_size * self.shared_size, False)[0]


BIN_BUDGET = 1 << 17  # counting bins per group of pairs: 1 MB count arrays stay in cache (measured best)


def _clip_count(pred, ref, bins_per_pair, want_ids):
    """Grams of each side as a list of (pair, bin within the pair) arrays, each sorted by pair;
    pair p has bins_per_pair[p] bins. Returns per pair the clipped overlap (sum over bins of
    min(#pred, #ref)) and, with want_ids (one array per side), for each occurrence a dense id of
    its bin among its pair's common bins (-1 when not common) and the common bins per pair.

    Pairs are counted in groups of at most BIN_BUDGET bins so the count arrays stay small, and
    every step after the two bincounts touches only occupied bins (most bins are empty)."""
    n_pairs = len(bins_per_pair)
    overlap = np.zeros(n_pairs, dtype=np.int64)
    common_size = np.zeros(n_pairs, dtype=np.int64)
    outs = [np.full(len(pred[0][0]), -1, dtype=np.int64), np.full(len(ref[0][0]), -1, dtype=np.int64)] if want_ids else None
    ends = np.cumsum(bins_per_pair)
    lo = 0
    while lo < n_pairs:  # groups of consecutive pairs with at most BIN_BUDGET bins (or one pair)
        start = int(ends[lo - 1]) if lo else 0
        hi = max(int(np.searchsorted(ends, start + BIN_BUDGET, side="right")), lo + 1)
        pair_start = ends[lo:hi] - bins_per_pair[lo:hi] - start  # first bin of each pair
        n_bins = int(ends[hi - 1]) - start
        spans, bins, owners = [], [], []
        for side in (pred, ref):
            parts, side_pairs = [], []
            for pair, b in side:
                a, z = np.searchsorted(pair, [lo, hi])
                spans.append((a, z))
                side_pairs.append(pair[a:z] - lo)
                parts.append(pair_start[side_pairs[-1]] + b[a:z])
            bins.append(np.concatenate(parts) if len(parts) > 1 else parts[0])
            owners.append(np.concatenate(side_pairs) if len(parts) > 1 else side_pairs[0])
        gp, gr = bins
        if n_bins > BIN_BUDGET and n_bins > 4 * (len(gp) + len(gr)):
            # One pair with a huge id space (long texts): renumber its occupied bins densely.
            used = np.unique(np.concatenate([gp, gr]))
            gp, gr, n_bins = np.searchsorted(used, gp), np.searchsorted(used, gr), len(used)
        count_p = np.bincount(gp, minlength=n_bins)
        count_r = np.bincount(gr, minlength=n_bins)
        # One prediction occurrence per occupied bin: the last one written for the bin.
        where = np.empty(n_bins, dtype=np.int64)
        order = np.arange(len(gp))
        where[gp] = order
        distinct = np.flatnonzero(where[gp] == order)
        bin_of = gp[distinct]
        hits = np.minimum(count_p[bin_of], count_r[bin_of])
        overlap[lo:hi] = np.bincount(owners[0][distinct], weights=hits, minlength=hi - lo).astype(np.int64)
        if want_ids:
            common = distinct[count_r[bin_of] > 0]  # one occurrence per common bin, pair-major
            owner = owners[0][common]
            size = np.bincount(owner, minlength=hi - lo)
            common_size[lo:hi] = size
            where[gp[common]] = np.arange(len(common)) - (np.cumsum(size) - size)[owner]
            (pa, pz), (ra, rz) = spans
            outs[0][pa:pz] = np.where(count_r[gp] > 0, where[gp], -1)
            outs[1][ra:rz] = np.where(count_p[gr] > 0, where[gr], -1)
        lo = hi
    return overlap, ((*outs, common_size) if want_ids else None)
