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


def _dense(values: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse.astype(np.int64), len(uniq)


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


def clipped_overlap(pred_pair, pred_gram, ref_pair, ref_gram, n_pairs: int) -> np.ndarray:
    """Per pair: sum over grams of min(#pred occurrences, #ref occurrences) (int64 array)."""
    pair_bits = max(int(n_pairs).bit_length(), 1)
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
