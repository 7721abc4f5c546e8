"""From an epoch's examples to per-step, per-process micro-batches.

1. `to_sequences`: each Example becomes (input_ids, labels) for the loss we train on. An epoch
   over compact tables (data/table.py) becomes a `SequenceView`: each item is read from the
   token arrays when a batch asks for it (numpy arrays, never the whole epoch as Python lists).
2. optional `pack_sequences`: several sequences per row; position ids restart at 0 for each one,
   which transformers turns into a block-diagonal causal mask (no attention across examples).
3. `plan_steps`: global batches of batch_size * grad_accum * processes items, length-grouped so
   that items of similar length share a micro-batch (less padding); the plan depends only on the
   epoch's order, so every process and every resumed run computes the same one.
4. `collate`: dynamic padding to the longest item of the micro-batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass

import numpy as np

IGNORE = -100


@dataclass
class Sequence:
    input_ids: list[int]
    label_ids: list[int]  # IGNORE where no loss; aligned with input_ids (shifted inside the loss)
    position_ids: list[int] | None = None  # packed rows only
    n_examples: int = 1
    # Encoder-decoder models: input_ids is the prompt, labels the target (no IGNORE prefix).
    seq2seq: bool = False


def to_sequences(examples, architecture: str = "causal", include_prompt_loss: bool = False):
    if hasattr(examples, "token_arrays"):  # an ExampleTable or EpochView: read lazily
        return SequenceView(examples, architecture, include_prompt_loss)
    return [_sequence(list(ex.input_ids), list(ex.label_ids), architecture, include_prompt_loss) for ex in examples]


class SequenceView(SequenceABC):
    """`to_sequences` of compact examples: item k is built from their token arrays on access."""

    def __init__(self, examples, architecture: str, include_prompt_loss: bool):
        self.examples, self.architecture, self.include_prompt_loss = examples, architecture, include_prompt_loss

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        tokens, trained = self.examples.token_arrays(k)
        ids = tokens.astype(np.int32)  # collate widens to int64 in the batch tensor
        labels = np.where(trained.astype(bool), ids, IGNORE)
        return _sequence(ids, labels, self.architecture, self.include_prompt_loss)


def _sequence(ids, labels, architecture: str, include_prompt_loss: bool) -> Sequence:
    """One item from an example's ids and label ids (lists, or int32 arrays of our own)."""
    if architecture == "seq2seq":
        # The last trained span (the answer; a chat's last trained turn) is the decoder's,
        # everything before it the encoder's input: a chat's earlier turns are context there.
        end = max((i + 1 for i, t in enumerate(labels) if t != IGNORE), default=len(labels))
        start = end
        while start > 0 and labels[start - 1] != IGNORE:
            start -= 1
        return Sequence(ids[:start], ids[start:end], seq2seq=True)
    if include_prompt_loss:
        labels = ids.copy()
    # The first token of a sequence is never predicted; masking it also stops a packed row
    # from predicting one example's first token from the previous example's last one.
    labels[0] = IGNORE
    return Sequence(ids, labels)


def seq_length(seq: Sequence) -> int:
    return len(seq.input_ids) + (len(seq.label_ids) if seq.seq2seq else 0)


def pack_sequences(seqs: list[Sequence], pack_length: int) -> list[Sequence]:
    """First-fit decreasing into rows of at most pack_length tokens (a longer sequence gets its own row)."""
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i].input_ids))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(seqs[i].input_ids)
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(pack_length - n)
    packed = []
    for row in rows:
        ids, labels, pos = [], [], []
        for i in row:
            ids += _as_list(seqs[i].input_ids)
            labels += _as_list(seqs[i].label_ids)
            pos += list(range(len(seqs[i].input_ids)))
        packed.append(Sequence(ids, labels, pos, n_examples=len(row)))
    return packed


def _as_list(values) -> list[int]:
    return values.tolist() if isinstance(values, np.ndarray) else values


def plan_steps(lengths: list[int], batch_size: int, grad_accum: int, world_size: int,
               group_by_length: bool, seed: int, epoch: int, min_part: int = 1) -> list[list[list[int]]]:
    """Steps of parts: plan[step][micro * world_size + rank] = item indices for that micro-batch.

    No item is dropped: the last global batch may be smaller, and its parts are split as evenly
    as possible (a part may be empty when there are fewer items than parts). min_part: the fewest
    items a non-empty part may hold (kto: 2, so that each example's KL row pairs its prompt with
    another example's answer, never its own): a short batch fills fewer parts, and a last batch
    smaller than min_part joins the one before it.
    """
    n = len(lengths)
    global_batch = batch_size * grad_accum * world_size
    order = list(range(n))
    if group_by_length:
        # Sort by length inside mega-chunks of 50 global batches, then shuffle the batches:
        # little padding, and the order of batch lengths stays random (as HF's LengthGroupedSampler).
        mega = global_batch * 50
        order = [i for s in range(0, n, mega) for i in sorted(order[s:s + mega], key=lambda i: -lengths[i])]
    batches = [order[s:s + global_batch] for s in range(0, n, global_batch)]
    if len(batches) > 1 and len(batches[-1]) < min_part:
        batches[-2] += batches.pop()
    if group_by_length:
        random.Random(seed * 1_000_003 + epoch).shuffle(batches)
    n_parts = grad_accum * world_size
    plan = []
    for batch in batches:
        used = max(1, min(n_parts, len(batch) // min_part))  # parts with items; the rest stay empty
        base, extra = divmod(len(batch), used)
        parts, start = [], 0
        for p in range(n_parts):
            size = base + (1 if p < extra else 0) if p < used else 0
            parts.append(batch[start:start + size])
            start += size
        plan.append(parts)
    return plan


@dataclass
class Batch:
    tensors: dict  # model inputs: input_ids, labels, attention_mask / position_ids
    real_tokens: int  # tokens of actual examples
    padded_tokens: int  # all positions the model computes, padding included
    label_tokens: int  # tokens the loss is taken on
    n_examples: int


def collate(seqs: list[Sequence], pad_id: int) -> Batch:
    import torch

    if not seqs:
        raise ValueError("collate() needs at least one sequence")
    if seqs[0].seq2seq:
        return _collate_seq2seq(seqs, pad_id)
    width = max(len(s.input_ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    packed = seqs[0].position_ids is not None
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    pos = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        n = len(s.input_ids)
        ids[r, :n] = torch.tensor(s.input_ids)
        labels[r, :n] = torch.tensor(s.label_ids)
        mask[r, :n] = 1
        if packed:
            pos[r, :n] = torch.tensor(s.position_ids)
            pos[r, n:] = torch.arange(width - n)  # padding forms its own (ignored) sequence
    tensors = {"input_ids": ids, "labels": labels}
    if packed:
        # No 2-D mask: transformers reads the restarts in position_ids as sequence boundaries.
        tensors["position_ids"] = pos
    else:
        tensors["attention_mask"] = mask
    real = int(mask.sum())
    return Batch(tensors, real, ids.numel(), int((labels[:, 1:] != IGNORE).sum()),
                 sum(s.n_examples for s in seqs))


def _collate_seq2seq(seqs: list[Sequence], pad_id: int) -> Batch:
    import torch

    width = max(len(s.input_ids) for s in seqs)
    target = max(len(s.label_ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), target), IGNORE, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, :len(s.input_ids)] = torch.tensor(s.input_ids)
        mask[r, :len(s.input_ids)] = 1
        labels[r, :len(s.label_ids)] = torch.tensor(s.label_ids)
    n_labels = int((labels != IGNORE).sum())
    return Batch({"input_ids": ids, "attention_mask": mask, "labels": labels},
                 int(mask.sum()) + n_labels, ids.numel() + labels.numel(), n_labels, len(seqs))
