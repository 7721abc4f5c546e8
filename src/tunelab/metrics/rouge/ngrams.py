"""Clipped n-gram overlap for many (prediction, reference) pairs at once, in numpy.

overlap(pair) = sum over n-grams g of min(count_pred(g), count_ref(g)). Every n-gram occurrence of
both sides becomes one int64 key (pair, gram, side); one sort groups equal (pair, gram) keys, and
per group min(#pred, #ref) is summed per pair. No Python loop over pairs or tokens.
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


def _dense(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Renumber values densely (equal values, equal ids) with one argsort."""
    order = argsort_keys(values) if len(values) and values.min() >= 0 else np.argsort(values, kind="stable")
    sorted_values = values[order]
    new = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])) if len(values) else []
    dense = np.empty(len(values), dtype=np.int64)
    dense[order] = np.cumsum(new) - 1
    return dense, int(np.count_nonzero(new))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique without numpy 2's hash path (much slower here than one sort)."""
    values = np.sort(values)
    if len(values) == 0:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def _segment_sums(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sums of consecutive segments of `values` with the given sizes (empty segments allowed)."""
    ends = np.cumsum(sizes)
    total = np.concatenate(([0], np.cumsum(values, dtype=np.int64)))
    return total[ends] - total[ends - sizes]


class LocalTokens:
    """Every token occurrence of each pair's prediction and reference, with a pair-local dense id
    (0 .. size[pair]-1). Small per-pair id spaces let overlaps be counted with np.bincount over
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
        # Tokens present on both sides of a pair, renumbered densely: only they can form
        # common grams, so pair overlaps are counted over (#shared)^2 bins per pair.
        base = np.cumsum(self.size) - self.size
        bins = int(self.size.sum())
        in_pred = np.bincount(base[self.pred_pair] + self.pred_local, minlength=bins) > 0
        in_ref = np.bincount(base[self.ref_pair] + self.ref_local, minlength=bins) > 0
        shared = in_pred & in_ref
        owner = np.repeat(np.arange(n_pairs), self.size)
        self.shared_size = np.bincount(owner[shared], minlength=n_pairs)
        rank = np.cumsum(shared) - 1 - (np.cumsum(self.shared_size) - self.shared_size)[owner]
        shared_id = np.where(shared, rank, -1)
        self.pred_shared = shared_id[base[self.pred_pair] + self.pred_local]
        self.ref_shared = shared_id[base[self.ref_pair] + self.ref_local]
        self.pred_first = np.cumsum(self.pred_len) - self.pred_len  # into pred_* arrays
        self.ref_first = np.cumsum(self.ref_len) - self.ref_len

    def unigram_overlap(self, pred_keep=None, ref_keep=None) -> np.ndarray:
        base = np.cumsum(self.size) - self.size
        bins = int(self.size.sum())
        pb = base[self.pred_pair] + self.pred_local
        rb = base[self.ref_pair] + self.ref_local
        if pred_keep is not None:
            pb = pb[pred_keep]
        if ref_keep is not None:
            rb = rb[ref_keep]
        both = np.minimum(np.bincount(pb, minlength=bins), np.bincount(rb, minlength=bins))
        return _segment_sums(both, self.size)

    def _pairs_at(self, first, length, pair, local, offsets):
        """(pair, first local id, second local id) of token pairs (i, i+d), d in offsets."""
        ps, a_s, b_s = [], [], []
        for d in offsets:
            q, _ = ranges(first, length - d)
            a, b = local[q], local[q + d]
            keep = (a >= 0) & (b >= 0)
            ps.append(pair[q][keep])
            a_s.append(a[keep])
            b_s.append(b[keep])
        if not ps:
            z = np.zeros(0, dtype=np.int64)
            return z, z, z
        return np.concatenate(ps), np.concatenate(a_s), np.concatenate(b_s)

    def _pair_keys(self, first, length, pair, shared, offsets, width, shift, tag):
        """Sort keys (pair, a*width+b, side) of the token pairs (t[i], t[i+d]) whose two tokens
        are both shared, from a (pairs x longest text) matrix of shared ids, -1 elsewhere."""
        longest = int(length.max(initial=0))
        grid = np.full((self.n_pairs, longest + 1), -1, dtype=np.int64)
        grid[pair, np.arange(len(pair)) - first[pair]] = shared
        row_key = (np.arange(self.n_pairs, dtype=np.int64) << shift)[:, None] | tag
        keys = []
        for d in offsets:
            if d >= longest:
                break
            a, b = grid[:, : longest + 1 - d], grid[:, d:]
            ok = (a >= 0) & (b >= 0)
            keys.append((row_key | ((a * width + b) << 1))[ok])
        return np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)

    def pair_overlap(self, offsets) -> np.ndarray:
        """Clipped overlap of the ordered token pairs (t[i], t[i+d]) for d in offsets.

        Only tokens present on both sides can form a common pair, so pairs are keyed by the
        pair-local ids of shared tokens: (pair, a, b, side) usually packs into 31 bits and the
        sort runs on int32 keys."""
        width = max(int(self.shared_size.max(initial=1)), 1)
        gram_bits = max(int(width * width - 1).bit_length(), 1)
        shift = gram_bits + 1
        pair_bits = max(int(self.n_pairs).bit_length(), 1)
        longest = int(max(self.pred_len.max(initial=0), self.ref_len.max(initial=0)))
        if pair_bits + shift > 62 or self.n_pairs * (longest + 1) > 30_000_000:  # generic path
            pp, pa, pb = self._pairs_at(self.pred_first, self.pred_len, self.pred_pair, self.pred_shared, offsets)
            rp, ra, rb = self._pairs_at(self.ref_first, self.ref_len, self.ref_pair, self.ref_shared, offsets)
            return clipped_overlap(pp, pa * width + pb, rp, ra * width + rb, self.n_pairs)
        keys = np.concatenate([
            self._pair_keys(self.pred_first, self.pred_len, self.pred_pair, self.pred_shared, offsets, width, shift, 0),
            self._pair_keys(self.ref_first, self.ref_len, self.ref_pair, self.ref_shared, offsets, width, shift, 1),
        ])
        if pair_bits + shift <= 31:
            keys = keys.astype(np.int32)
        return _count_clipped(keys, gram_bits, self.n_pairs)


def gram_ids(ids: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Id of the n-gram starting at each position (len(ids)-n+1 of them) and an exclusive bound.

    Equal n-grams get equal ids. Ids are packed base-V while they fit, else densely renumbered.
    """
    count = len(ids) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.int64), 1
    vocab = int(ids.max()) + 1 if len(ids) else 1
    grams, bound = ids[:count].astype(np.int64), vocab
    for k in range(1, n):
        if bound * vocab >= 1 << 40:
            grams, bound = _dense(grams)
        grams = grams * vocab + ids[k : k + count]
        bound *= vocab
    return grams, bound


def clipped_overlap(pred_pair, pred_gram, ref_pair, ref_gram, n_pairs: int, bound=None) -> np.ndarray:
    """Per pair: sum over grams of min(#pred occurrences, #ref occurrences) (int64 array)."""
    pair_bits = max(int(n_pairs).bit_length(), 1)
    if bound is None:
        bound = int(max(pred_gram.max(initial=0), ref_gram.max(initial=0))) + 1
    gram_bits = max(int(bound - 1).bit_length(), 1)
    if pair_bits + gram_bits + 1 > 62:
        dense, bound = _dense(np.concatenate([pred_gram, ref_gram]))
        pred_gram, ref_gram = dense[: len(pred_gram)], dense[len(pred_gram) :]
        gram_bits = max(int(bound - 1).bit_length(), 1)
    if len(pred_gram) == 0 or len(ref_gram) == 0:
        return np.zeros(n_pairs, dtype=np.int64)
    shift = gram_bits + 1
    keys = np.concatenate(
        [(pred_pair << shift) | (pred_gram << 1), (ref_pair << shift) | (ref_gram << 1) | 1]
    )
    if pair_bits + shift <= 31:  # int32 sorts about twice as fast
        keys = keys.astype(np.int32)
    return _count_clipped(keys, gram_bits, n_pairs)


def _count_clipped(keys: np.ndarray, gram_bits: int, n_pairs: int) -> np.ndarray:
    """keys = (pair, gram, side): per pair, sum over grams of min(#side 0, #side 1)."""
    if len(keys) == 0:
        return np.zeros(n_pairs, dtype=np.int64)
    keys.sort()
    group = keys >> 1
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    total = np.diff(np.append(starts, len(keys)))
    n_ref = np.add.reduceat(keys & 1, starts)
    clipped = np.minimum(total - n_ref, n_ref)
    overlap = np.bincount(group[starts] >> gram_bits, weights=clipped, minlength=n_pairs)
    return overlap.astype(np.int64)


def ngram_overlap(ids, text_start, pred_text, ref_text, n: int, ref_keep=None):
    """Per pair: (clipped n-gram overlap, #pred n-grams, #ref n-grams) as int64 arrays.

    `ref_keep` (bool per token, n=1 only) restricts the reference side to some of its tokens.
    """
    text_len = np.diff(text_start)
    pred_count = np.maximum(text_len[pred_text] - n + 1, 0)
    ref_count = np.maximum(text_len[ref_text] - n + 1, 0)
    grams, _ = gram_ids(ids, n)
    pred_idx, pred_pair = ranges(text_start[pred_text], pred_count)
    ref_idx, ref_pair = ranges(text_start[ref_text], ref_count)
    if ref_keep is not None:
        keep = ref_keep[ref_idx]
        ref_idx, ref_pair = ref_idx[keep], ref_pair[keep]
    overlap = clipped_overlap(pred_pair, grams[pred_idx], ref_pair, grams[ref_idx], len(pred_text))
    return overlap, pred_count, ref_count
