"""ROUGE-W (weighted LCS) exactly as ROUGE-1.5.5's `wlcs`/`wlcs_inner`/`markLCS` subs.

For every (reference sentence, prediction sentence) the perl script fills a DP table of floats
c[i][j] = c[i-1][j-1] + (k+1)**w - k**w on a match (k = length of the run of matches ending at
(i-1, j-1)), else max(c[i-1][j], c[i][j-1]) (up on ties), then walks the table back from the
corner and marks the reference positions on the path's diagonal moves. The marks of all
prediction sentences are OR-ed per reference sentence. Then, per reference sentence in order, a
marked token "hits" while its prediction unigram count is not used up, and runs of hits are
flushed as len**w at the end of a marked run (a quirk kept as is: a run whose last marked token
was clipped is carried over into the next run, or lost at the end of the sentence).

Squeezing (exact, and about half the cells on real text): a reference token that matches no token
of the prediction sentence gives a row with no match, c[i] = running max of c[i-1]; that row is
non-decreasing, so a second such row right after it is an identical copy, and the walk back goes
straight up through copies (c[i-1][j] = c[i][j] >= c[i][j-1]). Hence every run of match-free rows
is replaced by its first row, and match-free rows before the first match row are dropped (they
are all zero, and once the walk reaches them it marks nothing more). The same holds for columns
(the walk leaves a run of copied columns at the same row from its first column as from its last),
so both sequences are squeezed before the DP; an unmatched row or column becomes a token that
equals nothing.

Vectorisation: sentence pairs of similar (squeezed) sizes are padded into (rows, cols, pairs)
arrays; row i is computed at once except for the left-to-right max chain, which costs two numpy
operations per cell over all pairs of the chunk. Pairs without a common token squeeze to nothing
and are not run; the walk back drops pairs as they finish.
"""

from __future__ import annotations

import numpy as np

from tunelab.metrics.rouge.ngrams import argsort_keys, ranges

CHUNK = 8192
CELL_BUDGET = 2_000_000  # table cells per chunk (c alone is 16 MB: reused from the heap, not mmapped afresh)


def _padded(values, start, length, fill):
    """(longest, K) matrix: column k holds values[start[k] : start[k] + length[k]], then fill."""
    width = int(length.max(initial=0))
    at = start[None, :] + np.arange(width)[:, None]
    inside = np.arange(width)[:, None] < length[None, :]
    return np.where(inside, values[np.minimum(at, max(len(values) - 1, 0))], fill)


def _squeeze(tokens, length, has, fill):
    """Keep the positions that match something and the first position of each later run that
    matches nothing (as `fill`); drop the rest (see the module docstring). tokens/has: (L, K).
    Returns (pair, original position, token) of the kept positions, in pair-major order."""
    inside = np.arange(len(tokens))[:, None] < length[None, :]
    after_match = np.zeros_like(has)
    after_match[1:] = has[:-1]
    keep = (has | after_match) & inside
    pair, pos = np.nonzero(keep.T)
    return pair, pos, np.where(has[pos, pair], tokens[pos, pair], fill)


def _dp_marks(ref, can, r_len, c_len, origin, weight):
    """Marked reference tokens (their `origin`, a flat corpus index) of one chunk of sentence
    pairs: ref (rows, K) and can (cols, K) token ids, padded with -1 and -2 (never equal)."""
    rows, cols, k_n = len(ref), len(can), len(r_len)
    eq = ref[:, None, :] == can[None, :, :]  # (rows, cols, K)
    row_step = (cols + 1) * k_n  # c is (rows + 1, cols + 1, K): row and column 0 stay zero
    # Every match at once, as flat indices into c; row i's are matches[bounds[i - 1]:bounds[i]].
    in_eq = np.flatnonzero(eq)
    eq_row = in_eq // (cols * k_n)
    matches = (eq_row + 1) * row_step + (in_eq - eq_row * (cols * k_n)) + k_n
    bounds = np.searchsorted(eq_row, np.arange(rows + 1))
    runs = np.arange(min(rows, cols) + 2, dtype=np.float64)
    p1, p0 = runs[1:] ** weight, runs[:-1] ** weight  # (k+1)**w, k**w
    c = np.empty((rows + 1, cols + 1, k_n))
    c[0] = 0.0
    c[:, 0] = 0.0
    run = np.zeros((rows + 1, cols + 1, k_n), dtype=np.int32)
    flag = np.zeros(k_n, dtype=bool)
    for i in range(1, rows + 1):
        # Row i is a running max of the up values that restarts at each match with the diagonal
        # value c[i-1][j-1] + (k+1)**w - k**w. Matches are sparse: compute them by index, take a
        # plain running max, and redo cell by cell only the pairs where a match's value is below
        # the max to its left (there the restart matters).
        match = matches[bounds[i - 1] : bounds[i]] - i * row_step  # flat (j, pair) in row i, j >= 1
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
            flag[bad % k_n] = True
            sub = np.flatnonzero(flag)
            flag[sub] = False
            es, up = eq[i - 1][:, sub], c[i - 1, 1:][:, sub]
            ds = np.zeros((cols, len(sub)))
            d_all = np.zeros(row_step)
            d_all[match] = diag
            ds[:] = d_all.reshape(cols + 1, k_n)[1:, sub]
            r = np.zeros((cols + 1, len(sub)))
            for j in range(1, cols + 1):
                np.maximum(up[j - 1], r[j - 1], out=r[j])
                np.copyto(r[j], ds[j - 1], where=es[j - 1])
            c[i][:, sub] = r
    # Walk back (markLCS): diagonal on a match, else up if c[i-1][j] >= c[i][j-1], else left.
    # Flat indices into c and a padded copy of eq; finished pairs are dropped as they finish.
    eq_flat, c_flat = eq.reshape(-1), c.reshape(-1)
    eq_step = cols * k_n
    origin_flat = origin.reshape(-1)
    i, j, col = r_len.copy(), c_len.copy(), np.arange(k_n)
    marked = []
    while len(i):
        live = (i > 0) & (j > 0)
        if not live.all():
            i, j, col = i[live], j[live], col[live]
            if not len(i):
                break
        f = i * row_step + j * k_n + col
        diag_move = eq_flat[(i - 1) * eq_step + (j - 1) * k_n + col]
        up_move = ~diag_move & (c_flat[f - row_step] >= c_flat[f - k_n])
        marked.append(origin_flat[((i - 1) * k_n + col)[diag_move]])
        i = i - (diag_move | up_move)
        j = j - ~up_move
    return np.concatenate(marked) if marked else np.zeros(0, dtype=np.int64)


def _chunks(rows, cols, select):
    """Index arrays of chunks of similar (rows, cols), at most CHUNK long and CELL_BUDGET cells."""
    order = select[np.lexsort((cols[select], rows[select] // 4, cols[select] // 4))]
    lo = 0
    while lo < len(order):
        size = CHUNK
        while size > 16:
            window = order[lo : lo + size]
            if (rows[window].max() + 1) * (cols[window].max() + 1) * len(window) <= CELL_BUDGET:
                break
            size //= 2
        yield order[lo : lo + size]
        lo += size


def _run_starts(owner, n):
    """Where each owner's (contiguous) run starts in `owner`; 0 for owners without one."""
    at = np.zeros(n, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1]))) if len(owner) else owner
    at[owner[starts]] = starts
    return at


def wlcs_marks(pairs, weight: float, part: int = 0, parts: int = 1) -> np.ndarray:
    """Which reference tokens (flat corpus index) lie on a marked WLCS path; with parts > 1,
    only chunk part, part + parts, ... of the work (the union of all parts is the whole)."""
    ids = pairs.corpus.ids
    n_pairs = len(pairs)
    seg_pair, seg_start, seg_len = pairs.sentences(pairs.ref_text)
    cand_pair, cand_start, cand_len = pairs.sentences(pairs.pred_text)
    # All (reference sentence, prediction sentence) combinations within each pair.
    cand_first = np.searchsorted(cand_pair, np.arange(n_pairs))
    cand_count = np.bincount(cand_pair, minlength=n_pairs)
    combo_cand, combo_seg = ranges(cand_first[seg_pair], cand_count[seg_pair])
    r_start, r_len = seg_start[combo_seg], seg_len[combo_seg]
    c_start, c_len = cand_start[combo_cand], cand_len[combo_cand]
    # Pass 1: squeeze every combination's sequences (rows and columns without a match).
    ref_parts, can_parts = [], []
    for chunk, idx in enumerate(_chunks(r_len, c_len, np.arange(len(r_len)))):
        if chunk % parts != part:
            continue
        ref = _padded(ids, r_start[idx], r_len[idx], -1)
        can = _padded(ids, c_start[idx], c_len[idx], -2)
        eq = ref[:, None, :] == can[None, :, :]
        k, pos, token = _squeeze(ref, r_len[idx], eq.any(axis=1), -1)
        ref_parts.append((idx[k], token, np.where(token >= 0, r_start[idx][k] + pos, -1)))
        k, _, token = _squeeze(can, c_len[idx], eq.any(axis=0), -2)
        can_parts.append((idx[k], token))
    marked = np.zeros(len(ids), dtype=bool)
    if not ref_parts:
        return marked
    ref_combo, ref_token, ref_origin = (np.concatenate(x) for x in zip(*ref_parts))
    can_combo, can_token = (np.concatenate(x) for x in zip(*can_parts))
    n_combos = len(r_len)
    r_new = np.bincount(ref_combo, minlength=n_combos)
    c_new = np.bincount(can_combo, minlength=n_combos)
    r_at, c_at = _run_starts(ref_combo, n_combos), _run_starts(can_combo, n_combos)
    # Pass 2: the DP on the squeezed sequences, in chunks of similar squeezed sizes.
    for idx in _chunks(r_new, c_new, np.flatnonzero((r_new > 0) & (c_new > 0))):
        ref = _padded(ref_token, r_at[idx], r_new[idx], -1)
        can = _padded(can_token, c_at[idx], c_new[idx], -2)
        origin = _padded(ref_origin, r_at[idx], r_new[idx], -1)
        marked[_dp_marks(ref, can, r_new[idx], c_new[idx], origin, weight)] = True
    return marked


def wlcs_hits(pairs, weight: float, marked=None):
    """Per pair: (hit, base = sum of reference sentence len**w, prediction length); `marked`
    from wlcs_marks (computed here when not given)."""
    if marked is None:
        marked = wlcs_marks(pairs, weight)
    n_pairs = len(pairs)
    pred_len, _ = pairs.lengths()
    seg_pair, seg_start, seg_len = pairs.sentences(pairs.ref_text)
    base = np.bincount(seg_pair, weights=seg_len.astype(np.float64) ** weight, minlength=n_pairs)
    return _hits(pairs, marked, seg_pair, seg_start, seg_len, weight), base, pred_len


def _hits(pairs, marked, seg_pair, seg_start, seg_len, weight):
    n_pairs = len(pairs)
    pos, sent = ranges(seg_start, seg_len)  # every reference token, in reading order
    pair = seg_pair[sent]
    is_marked = marked[pos]
    # Clipping: the r-th marked occurrence of token t in a pair hits iff r < count of t in pred.
    # Tokens as pair-local bins; the reference tokens in reading order are exactly lt.ref_idx.
    lt = pairs.local
    m_pos = np.flatnonzero(is_marked)
    key = lt.ref_bin[m_pos]
    order = argsort_keys(key)
    sk = key[order]
    group_start = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1]))) if len(sk) else sk
    rank_sorted = np.arange(len(sk)) - np.repeat(group_start, np.diff(np.append(group_start, len(sk))))
    rank = np.empty(len(sk), dtype=np.int64)
    rank[order] = rank_sorted
    peer_count = lt.pred_count[key]
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
