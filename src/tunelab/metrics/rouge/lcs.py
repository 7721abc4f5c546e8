"""Bit-parallel LCS (Allison-Dix / Hyyro) for thousands of pairs at once, in numpy.

The reference side of each pair is a bit vector (W uint64 words per pair, pairs along the last
axis so each word is a contiguous array); the candidate is consumed one token per step with
V <- ((V + U) | (V - U)), U = V & Match[token]. A step is ~a dozen numpy operations over all pairs
of a chunk, so the Python loop runs max(candidate length) times per chunk, not per pair or cell.

Several reference sentences share one vector, separated by guard bits that absorb the carry, so
one pass over a candidate sentence computes its LCS table against every reference sentence.
The table is implicit: L[i][j] = number of zero bits of V_j below row i (within the segment).

`union_lcs` also reads out, for every (reference sentence, candidate sentence), the LCS that
rouge-score's `_backtrack_norec` picks, and returns the union of the picked reference positions.
Walking back over candidate columns j, the backtrack moves up column j while the row has no match
and V_j's bit is 1, takes a match diagonally, and moves left at a zero bit. So per column it needs
"the highest set bit of (Match | ~V_j) below row i" for every segment at once: in bit-reversed
order that is "the lowest set bit at or above a marker", which one addition finds for all
segments: ((~T + Q) & T). Guard bits stop the search at segment ends.
"""

from __future__ import annotations

import numpy as np

from tunelab.metrics.rouge.ngrams import argsort_keys, ranges

_ONE = np.uint64(1)
_REV8 = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)
CHUNK = 4096


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Multi-word unsigned addition; arrays are (W, n), word 0 least significant."""
    if len(a) == 1:
        return a + b
    out = np.empty_like(a)
    carry = np.zeros(a.shape[1], dtype=np.uint64)
    for w in range(len(a)):
        s = a[w] + b[w]
        c1 = s < a[w]
        s2 = s + carry
        out[w] = s2
        carry = (c1 | (s2 < s)).astype(np.uint64)
    return out


def _shl1(a: np.ndarray) -> np.ndarray:
    out = a << _ONE
    if len(a) > 1:
        out[1:] |= a[:-1] >> np.uint64(63)
    return out


def _bits(n_words: int, owner: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """(W, n) words with bit pos[k] set in column owner[k]."""
    out = np.zeros((n_words, n), dtype=np.uint64)
    word = pos >> 6
    np.bitwise_or.at(out, (word, owner), _ONE << (pos & 63).astype(np.uint64))
    return out


def _reverse(x: np.ndarray) -> np.ndarray:
    """Reverse every column's W*64-bit vector; x is (..., W, n)."""
    t = np.ascontiguousarray(np.moveaxis(x, -2, -1))  # (..., n, W)
    b = _REV8[t.view(np.uint8)][..., ::-1]
    return np.moveaxis(np.ascontiguousarray(b).view(np.uint64), -1, -2)


def _masks(n, n_words, tok_owner, tok_id, tok_pos, q_owner, q_id):
    """For each query (owner, token id): the bit mask of positions with that token, (W, nq)."""
    if len(tok_id) == 0 or len(q_id) == 0:
        return np.zeros((n_words, len(q_id)), dtype=np.uint64)
    vocab = int(max(tok_id.max(initial=0), q_id.max(initial=0))) + 1
    key = tok_owner * vocab + tok_id
    order = argsort_keys(key)
    key, pos = key[order], tok_pos[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1]))) if len(key) else key
    ukey = key[starts]
    umask = np.zeros((n_words, len(ukey)), dtype=np.uint64)
    word = pos >> 6
    bit = _ONE << (pos & 63).astype(np.uint64)
    for w in range(n_words):
        if len(ukey):
            umask[w] = np.bitwise_or.reduceat(np.where(word == w, bit, 0), starts)
    qkey = q_owner * vocab + q_id
    at = np.minimum(np.searchsorted(ukey, qkey), max(len(ukey) - 1, 0))
    found = (ukey[at] == qkey) if len(ukey) else np.zeros(len(qkey), dtype=bool)
    return np.where(found, umask[:, at] if len(ukey) else 0, np.uint64(0))


def _run_chunk(ids, pairs, seg, cand, backtrack):
    """One chunk of pairs. seg/cand: (pair_local, start, length) arrays of ref segments and
    candidate sentences, sorted by pair. Returns (lcs per segment-run, used token indices)."""
    n = len(pairs)
    seg_pair, seg_start, seg_len = seg
    c_pair, c_start, c_len = cand
    # Natural layout: guard bit 0, then each segment followed by a guard bit.
    seg_first = np.concatenate(([True], seg_pair[1:] != seg_pair[:-1]))
    span = seg_len + 1
    csum = np.cumsum(span) - span  # start of each segment relative to its pair's first segment
    pair_base = np.maximum.accumulate(np.where(seg_first, csum, 0))
    offset = 1 + csum - pair_base
    total_bits = np.zeros(n, dtype=np.int64)
    np.maximum.at(total_bits, seg_pair, offset + seg_len + 1)
    n_words = max(int((total_bits.max(initial=1) + 63) // 64), 1)
    top = n_words * 64 - 1
    r_idx, r_seg = ranges(seg_start, seg_len)
    r_pos = offset[r_seg] + (r_idx - seg_start[r_seg])
    r_pair = seg_pair[r_seg]
    seg_mask = _bits(n_words, r_pair, r_pos, n)
    # Candidate tokens in order, padded to the longest candidate of the chunk.
    c_idx, c_sent = ranges(c_start, c_len)
    c_owner = c_pair[c_sent]
    pair_tok_start = np.zeros(n + 1, dtype=np.int64)
    np.add.at(pair_tok_start, c_owner + 1, 1)
    pair_tok_start = np.cumsum(pair_tok_start)
    col = np.arange(len(c_idx)) - pair_tok_start[c_owner]
    max_len = int(col.max(initial=-1)) + 1
    match = np.zeros((max_len, n_words, n), dtype=np.uint64)
    match[col, :, c_owner] = _masks(n, n_words, r_pair, ids[r_idx], r_pos, c_owner, ids[c_idx]).T
    sent_begin = np.zeros((max_len, n), dtype=bool)
    sent_begin[col[c_idx == c_start[c_sent]], c_owner[c_idx == c_start[c_sent]]] = True
    v = seg_mask.copy()
    xs = np.empty((max_len, n_words, n), dtype=np.uint64) if backtrack else None
    for j in range(max_len):
        v = np.where(sent_begin[j], seg_mask, v)
        u = v & match[j]
        v = (_add(v, u) | (v & ~u)) & seg_mask
        if backtrack:
            xs[j] = match[j] | ~v
    if not backtrack:
        return v, seg_mask, None
    # Backward pass in bit-reversed coordinates (natural bit x -> top - x).
    t_rev = _reverse(xs) | _reverse(~seg_mask)[None]  # guards (and unused bits) stop the search
    m_rev = _reverse(match)
    last = c_idx == c_start[c_sent] + c_len[c_sent] - 1
    sent_end = np.zeros((max_len, n), dtype=bool)
    sent_end[col[last], c_owner[last]] = True
    q0 = _bits(n_words, seg_pair, top - (offset + seg_len - 1), n)
    q = q0.copy()
    used = np.zeros((n_words, n), dtype=np.uint64)
    for j in range(max_len - 1, -1, -1):
        q = np.where(sent_end[j], q0, q)
        t = t_rev[j]
        h = _add(~t, q) & t
        took = h & m_rev[j]
        used |= took
        q = (h & ~m_rev[j]) | _shl1(took)
    used_bits = np.unpackbits(np.ascontiguousarray(used.T).view(np.uint8), axis=1, bitorder="little")
    # Back to token indices: natural position -> flat token index.
    where_tok = np.full((n, n_words * 64), -1, dtype=np.int64)
    where_tok[r_pair, top - r_pos] = r_idx
    picked = where_tok[used_bits.astype(bool)]
    return v, seg_mask, picked


def _chunks(n_pairs, seg_pair, seg_len, cand_pair, cand_len):
    """Group pairs of similar size so padding stays small; yields arrays of pair indices."""
    ref_bits = np.bincount(seg_pair, weights=seg_len + 1, minlength=n_pairs) + 1
    cand_tokens = np.bincount(cand_pair, weights=cand_len, minlength=n_pairs)
    order = np.lexsort((cand_tokens, (ref_bits + 63) // 64))
    for i in range(0, n_pairs, CHUNK):
        yield np.sort(order[i : i + CHUNK])


def _select(owner, members, n_pairs):
    """Rows of `owner` belonging to `members`, and their index within `members`."""
    local = np.full(n_pairs, -1, dtype=np.int64)
    local[members] = np.arange(len(members))
    rows = np.flatnonzero(local[owner] >= 0)
    return rows, local[owner[rows]]


def lcs_lengths(ids, ref_start, ref_len, cand_start, cand_len) -> np.ndarray:
    """LCS length of ids[ref_start[i]:+ref_len[i]] and ids[cand_start[i]:+cand_len[i]] per pair."""
    n_pairs = len(ref_start)
    out = np.zeros(n_pairs, dtype=np.int64)
    pair = np.arange(n_pairs)
    busy = np.flatnonzero((ref_len > 0) & (cand_len > 0))
    for chunk in _chunks(len(busy), pair[: len(busy)], ref_len[busy], pair[: len(busy)], cand_len[busy]):
        members = busy[chunk]
        loc = np.arange(len(members))
        seg = (loc, ref_start[members], ref_len[members])
        cand = (loc, cand_start[members], cand_len[members])
        v, seg_mask, _ = _run_chunk(ids, members, seg, cand, backtrack=False)
        ones = np.bitwise_count(v).sum(axis=0)
        out[members] = ref_len[members] - ones
    return out


def union_lcs(ids, seg_pair, seg_start, seg_len, cand_pair, cand_start, cand_len, n_pairs):
    """rouge-score's union LCS: flat indices of the reference tokens picked by any candidate
    sentence's LCS, with their pair. Segments (reference sentences) and candidate sentences are
    given per pair, sorted by pair."""
    picked_all, owner_all = [], []
    for members in _chunks(n_pairs, seg_pair, seg_len, cand_pair, cand_len):
        srows, sloc = _select(seg_pair, members, n_pairs)
        crows, cloc = _select(cand_pair, members, n_pairs)
        if len(srows) == 0 or len(crows) == 0:
            continue
        seg = (sloc, seg_start[srows], seg_len[srows])
        cand = (cloc, cand_start[crows], cand_len[crows])
        _, _, picked = _run_chunk(ids, members, seg, cand, backtrack=True)
        picked_all.append(picked)
    if not picked_all:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(picked_all)
