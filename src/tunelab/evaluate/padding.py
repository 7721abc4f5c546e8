"""Left-padded batches for the evaluation engine: the pad id and the (ids, mask, positions) triple.

Generation and both log-likelihood scorers put every row's last token in the last column, so the
logits the next token (or a continuation) needs are at the same column for every row. Row i of a
batch must see exactly what it would see alone: padded columns are masked out of attention and
positions come from the mask (the first real token is position 0), not from the column index.
"""

from __future__ import annotations

import torch


def pad_token_id(tokenizer) -> int:
    """The id written into padded columns: the pad token, else EOS, else 0.

    The columns are masked, so the value only reaches the embedding lookup; any id in the vocabulary
    gives the same results. EOS is the stand-in models.load_tokenizer uses for a tokenizer without
    a pad token, so a tokenizer loaded elsewhere pads the same way."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def left_pad(rows: list[list[int]], pad_id: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, position ids) of `rows` left padded to the longest, on the CPU.

    `start` is the position of each row's first token (the length of a prefix already in the KV
    cache); a padded column gets the first position, which its mask makes irrelevant."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids, mask, start + (mask.cumsum(-1) - 1).clamp(min=0)
