"""Corpus-wide, vectorised BLEU match counting (numpy): the fast path of bleu.segment_statistics.

For every record and order n we need sum over n-grams g of min(#g in hypothesis, max over the
record's references of #g in that reference). Instead of one dict per text and order, all texts
of the corpus are flattened into one array of token ids, and each n-gram occurrence gets an id
that already includes its record: order 1 = factorised (record, token); order n = factorised
(id of the (n-1)-gram at p, token at p + n - 1). Occurrences with the same id are the same n-gram
in the same record, so per-id counts are bincounts: hypothesis counts, per-reference counts (max
over references), their minimum, then a bincount by record. One sort per order (np.unique) and
linear passes otherwise. Exact integer arithmetic: the results equal the dict path bit for bit
(tests/metrics/test_bleu.py checks both against sacrebleu).
"""

from __future__ import annotations

from itertools import chain

import numpy as np


def match_statistics(
    hyp_tokens: list[list[str]], ref_tokens: list[list[list[str]]], max_order: int
) -> tuple[np.ndarray, np.ndarray]:
    """(correct, total): int64 arrays of shape (n_records, max_order)."""
    n_rec = len(hyp_tokens)
    texts = hyp_tokens + [tokens for refs in ref_tokens for tokens in refs]
    text_rec = np.concatenate([np.arange(n_rec), np.repeat(np.arange(n_rec), [len(r) for r in ref_tokens])])
    # slot -1 = hypothesis, k = the record's k-th (present) reference
    text_slot = np.concatenate(
        [np.full(n_rec, -1), np.fromiter(chain.from_iterable(range(len(r)) for r in ref_tokens), dtype=np.int64)]
    ).astype(np.int64)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    flat = list(chain.from_iterable(texts))
    vocab = dict(zip(dict.fromkeys(flat), range(len(flat))))
    ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    n_vocab = max(len(vocab), 1)

    text_of_pos = np.repeat(np.arange(len(texts)), lengths)
    # tokens left in the text from each position on (including it): n-gram of order n starts at p iff >= n
    ends = np.cumsum(lengths)[text_of_pos]
    remaining = ends - np.arange(len(flat))
    rec_of_pos = text_rec[text_of_pos]
    slot_of_pos = text_slot[text_of_pos]
    n_slots = int(text_slot.max()) + 1 if len(text_slot) else 0

    hyp_len = lengths[:n_rec]
    total = np.maximum(hyp_len[:, None] - np.arange(max_order)[None, :], 0)
    correct = np.zeros((n_rec, max_order), dtype=np.int64)

    positions = np.arange(len(flat))
    code = rec_of_pos * n_vocab + ids  # order 1: (record, token)
    for n in range(1, max_order + 1):
        if n > 1:
            keep = remaining[positions] >= n
            positions = positions[keep]
            code = code[keep] * n_vocab + ids[positions + n - 1]
        if len(positions) == 0:
            break
        _, code = np.unique(code, return_inverse=True)
        code = code.ravel()
        n_codes = int(code.max()) + 1
        slots = slot_of_pos[positions]
        hyp_counts = np.bincount(code[slots == -1], minlength=n_codes)
        ref_counts = np.zeros(n_codes, dtype=np.int64)
        for k in range(n_slots):
            np.maximum(ref_counts, np.bincount(code[slots == k], minlength=n_codes), out=ref_counts)
        matched = np.minimum(hyp_counts, ref_counts)
        rec_of_code = np.empty(n_codes, dtype=np.int64)
        rec_of_code[code] = rec_of_pos[positions]
        hit = np.flatnonzero(matched)
        correct[:, n - 1] = np.bincount(rec_of_code[hit], weights=matched[hit], minlength=n_rec).astype(np.int64)
    return correct, total
