"""ROUGE-W (weighted LCS) exactly as ROUGE-1.5.5's `wlcs`/`wlcs_inner`/`markLCS` subs.

For every (reference sentence, prediction sentence) the perl script fills a DP table of floats
c[i][j] = c[i-1][j-1] + (k+1)**w - k**w on a match (k = length of the run of matches ending at
(i-1, j-1)), else max(c[i-1][j], c[i][j-1]) (up on ties), then walks the table back from the
corner and marks the reference positions on the path's diagonal moves. The marks of all
prediction sentences are OR-ed per reference sentence. Then, per reference sentence in order, a
marked token "hits" while its prediction unigram count is not used up, and runs of hits are
flushed as len**w at the end of a marked run (a quirk kept as is: a run whose last marked token
was clipped is carried over into the next run, or lost at the end of the sentence).

Vectorisation: sentence pairs of similar sizes are padded into (rows, cols, pairs) arrays; row i
is computed at once except for the left-to-right max chain, which costs two numpy operations per
cell over all pairs of the chunk. Only sentence pairs with at least one common token are run,
and the walk back drops pairs as they finish.
"""

from __future__ import annotations

import numpy as np

from tunelab.metrics.rouge.ngrams import argsort_keys, ranges

CHUNK = 8192
CELL_BUDGET = 6_000_000  # table cells per chunk (x ~13 bytes)


def _dp_marks(ids, r_start, r_len, c_start, c_len, weight):
    """Marked reference token indices (flat) for each sentence pair of one chunk."""
    k_n = len(r_start)
    rows, cols = int(r_len.max()), int(c_len.max())
    ri = r_start[None, :] + np.arange(rows)[:, None]
    ci = c_start[None, :] + np.arange(cols)[:, None]
    ref = np.where(np.arange(rows)[:, None] < r_len[None, :], ids[np.minimum(ri, len(ids) - 1)], -1)
    can = np.where(np.arange(cols)[:, None] < c_len[None, :], ids[np.minimum(ci, len(ids) - 1)], -2)
    eq = ref[:, None, :] == can[None, :, :]  # (rows, cols, K)
    # Pairs without a common token mark nothing: drop them before the DP.
    has = eq.any(axis=(0, 1))
    if not has.all():
        keep = np.flatnonzero(has)
        if not len(keep):
            return np.zeros(0, dtype=np.int64)
        eq, r_start, r_len, c_len = eq[:, :, keep], r_start[keep], r_len[keep], c_len[keep]
        k_n = len(keep)
    runs = np.arange(min(rows, cols) + 2, dtype=np.float64)
    p1, p0 = runs[1:] ** weight, runs[:-1] ** weight  # (k+1)**w, k**w
    c = np.zeros((rows + 1, cols + 1, k_n))
    run = np.zeros((rows + 1, cols + 1, k_n), dtype=np.int32)
    width = (cols + 1) * k_n
    for i in range(1, rows + 1):
        # Row i is a running max of the up values that restarts at each match with the diagonal
        # value c[i-1][j-1] + (k+1)**w - k**w. Matches are sparse: compute them by index, take a
        # plain running max, and redo cell by cell only the pairs where a match's value is below
        # the max to its left (there the restart matters).
        match = np.flatnonzero(eq[i - 1]) + k_n  # flat (j, pair) index into row i, j >= 1
        prev, row = c[i - 1].reshape(-1), c[i].reshape(-1)
        k = run[i - 1].reshape(-1)[match - k_n]
        diag = (prev[match - k_n] + p1[k]) - p0[k]  # perl evaluates left to right
        row[k_n:] = prev[k_n:]
        row[match] = diag
        ci = c[i]
        for j in range(2, cols + 1):  # 16x faster than maximum.accumulate(axis=0) here
            np.maximum(ci[j], ci[j - 1], out=ci[j])
        run[i].reshape(-1)[match] = k + 1
        late = match >= 2 * k_n
        bad = match[late][diag[late] < row[match[late] - k_n]]
        if len(bad):
            sub = np.unique(bad % k_n)
            es, up = eq[i - 1][:, sub], c[i - 1, 1:][:, sub]
            ds = np.zeros((cols, len(sub)))
            d_all = np.zeros(width)
            d_all[match] = diag
            ds[:] = d_all.reshape(cols + 1, k_n)[1:, sub]
            r = np.zeros((cols + 1, len(sub)))
            for j in range(1, cols + 1):
                np.maximum(up[j - 1], r[j - 1], out=r[j])
                np.copyto(r[j], ds[j - 1], where=es[j - 1])
            c[i][:, sub] = r
    # Walk back (markLCS): diagonal on a match, else up if c[i-1][j] >= c[i][j-1], else left.
    # Flat indices into c and a padded copy of eq; finished pairs are dropped as they finish.
    eq_pad = np.zeros((rows + 1, cols + 1, k_n), dtype=bool)
    eq_pad[1:, 1:] = eq
    eq_flat, c_flat = eq_pad.reshape(-1), c.reshape(-1)
    row_step = (cols + 1) * k_n
    i, j, col, start = r_len.copy(), c_len.copy(), np.arange(k_n), r_start
    marked = []
    while len(i):
        live = (i > 0) & (j > 0)
        if not live.all():
            i, j, col, start = i[live], j[live], col[live], start[live]
            if not len(i):
                break
        f = i * row_step + j * k_n + col
        diag_move = eq_flat[f]
        up_move = ~diag_move & (c_flat[f - row_step] >= c_flat[f - k_n])
        marked.append(start[diag_move] + i[diag_move] - 1)
        i = i - (diag_move | up_move)
        j = j - ~up_move
    return np.concatenate(marked) if marked else np.zeros(0, dtype=np.int64)


def wlcs_hits(pairs, weight: float):
    """Per pair: (hit, base = sum of reference sentence len**w, prediction length)."""
    corpus = pairs.corpus
    ids = corpus.ids
    n_pairs = len(pairs)
    pred_len, ref_len = pairs.lengths()
    seg_pair, seg_start, seg_len = pairs.sentences(pairs.ref_text)
    cand_pair, cand_start, cand_len = pairs.sentences(pairs.pred_text)
    base = np.bincount(seg_pair, weights=seg_len.astype(np.float64) ** weight, minlength=n_pairs)
    # All (reference sentence, prediction sentence) combinations within each pair.
    cand_first = np.searchsorted(cand_pair, np.arange(n_pairs))
    cand_count = np.bincount(cand_pair, minlength=n_pairs)
    combo_cand, combo_seg = ranges(cand_first[seg_pair], cand_count[seg_pair])
    r_start, r_len = seg_start[combo_seg], seg_len[combo_seg]
    c_start, c_len = cand_start[combo_cand], cand_len[combo_cand]
    # Skip combinations without a common token (their table is all zeros, nothing is marked).
    sel = np.arange(len(combo_seg))
    # Chunks of similar (rows, cols) so that padding stays small.
    order = sel[np.lexsort((c_len[sel], r_len[sel] // 4, c_len[sel] // 4))]
    marked = np.zeros(len(ids), dtype=bool)
    lo = 0
    while lo < len(order):
        size = CHUNK
        while size > 16:
            window = order[lo : lo + size]
            if (r_len[window].max() + 1) * (c_len[window].max() + 1) * len(window) <= CELL_BUDGET:
                break
            size //= 2
        idx = order[lo : lo + size]
        lo += size
        marked[_dp_marks(ids, r_start[idx], r_len[idx], c_start[idx], c_len[idx], weight)] = True
    hit = _hits(pairs, marked, seg_pair, seg_start, seg_len, weight)
    return hit, base, pred_len


def _hits(pairs, marked, seg_pair, seg_start, seg_len, weight):
    corpus = pairs.corpus
    ids = corpus.ids
    n_pairs = len(pairs)
    vocab = int(ids.max(initial=0)) + 1
    pos, sent = ranges(seg_start, seg_len)  # every reference token, in reading order
    pair = seg_pair[sent]
    is_marked = marked[pos]
    # Clipping: the r-th marked occurrence of token t in a pair hits iff r < count of t in pred.
    m_pos = np.flatnonzero(is_marked)
    key = pair[m_pos] * vocab + ids[pos[m_pos]]
    order = argsort_keys(key)
    sk = key[order]
    group_start = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1]))) if len(sk) else sk
    rank_sorted = np.arange(len(sk)) - np.repeat(group_start, np.diff(np.append(group_start, len(sk))))
    rank = np.empty(len(sk), dtype=np.int64)
    rank[order] = rank_sorted
    p_idx, p_own = ranges(corpus.text_start[pairs.pred_text], corpus.text_len[pairs.pred_text])
    p_key = np.sort(p_own * vocab + ids[p_idx])
    peer_count = np.searchsorted(p_key, key, side="right") - np.searchsorted(p_key, key)
    passes = np.zeros(len(pos), dtype=bool)
    passes[m_pos] = rank < peer_count
    # Flush a run at a passing token that ends its sentence or is followed by an unmarked one.
    is_last = np.zeros(len(pos), dtype=bool)
    is_last[np.cumsum(seg_len)[seg_len > 0] - 1] = True
    next_marked = np.append(is_marked[1:], False)
    flush = np.flatnonzero(passes & (is_last | ~next_marked))
    if len(flush) == 0:
        return np.zeros(n_pairs)
    cum = np.cumsum(passes)
    sent_first = np.cumsum(seg_len) - seg_len  # index in `pos` of each sentence's first token
    prev = np.concatenate(([-1], flush[:-1]))
    same = (prev >= 0) & (sent[np.maximum(prev, 0)] == sent[flush])
    boundary = np.where(same, prev, sent_first[sent[flush]] - 1)
    before = np.where(boundary >= 0, cum[np.maximum(boundary, 0)], 0)
    run_len = cum[flush] - before
    return np.bincount(pair[flush], weights=run_len.astype(np.float64) ** weight, minlength=n_pairs)
