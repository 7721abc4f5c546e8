import random

import torch

from tunelab.train.batching import IGNORE, Sequence, collate, pack_sequences, plan_steps, to_sequences


class Ex:
    def __init__(self, prompt, target):
        self.input_ids = prompt + target
        self.label_ids = [IGNORE] * len(prompt) + target


def test_plan_covers_every_item_once_and_splits_like_one_process():
    rng = random.Random(0)
    lengths = [rng.randint(3, 90) for _ in range(37)]
    one = plan_steps(lengths, 8, 1, 1, True, seed=1, epoch=2)
    two = plan_steps(lengths, 4, 1, 2, True, seed=1, epoch=2)
    assert sorted(i for step in one for part in step for i in part) == list(range(37))
    # Same global batches, split between the two processes.
    assert [sorted(step[0]) for step in one] == [sorted(step[0] + step[1]) for step in two]
    # The last step is short (37 = 4 * 8 + 5) and nothing is dropped.
    assert sorted(sum(len(p) for p in step) for step in two) == [5, 8, 8, 8, 8]
    assert [[len(p) for p in step] for step in two if sum(map(len, step)) == 5] == [[3, 2]]


def test_length_grouping_reduces_padding():
    rng = random.Random(1)
    lengths = [rng.randint(3, 200) for _ in range(400)]

    def padding(plan):
        return sum(max(lengths[i] for i in part) * len(part) - sum(lengths[i] for i in part)
                   for step in plan for part in step if part)

    grouped = padding(plan_steps(lengths, 8, 1, 1, True, 0, 0))
    plain = padding(plan_steps(lengths, 8, 1, 1, False, 0, 0))
    assert grouped < plain / 5


def test_to_sequences_masks_prompt_and_first_token():
    seqs = to_sequences([Ex([5, 6, 7], [8, 9])])
    assert seqs[0].label_ids == [IGNORE, IGNORE, IGNORE, 8, 9]
    with_prompt = to_sequences([Ex([5, 6, 7], [8, 9])], include_prompt_loss=True)
    assert with_prompt[0].label_ids == [IGNORE, 6, 7, 8, 9]
    s2s = to_sequences([Ex([5, 6, 7], [8, 9])], architecture="seq2seq")
    assert s2s[0].input_ids == [5, 6, 7] and s2s[0].label_ids == [8, 9] and s2s[0].seq2seq


def test_collate_counts_real_and_padding_tokens():
    batch = collate([Sequence([1, 2, 3], [IGNORE, 2, 3]), Sequence([4], [IGNORE])], pad_id=0)
    assert batch.tensors["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch.tensors["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert (batch.real_tokens, batch.padded_tokens, batch.label_tokens) == (4, 6, 2)


def test_packing_restarts_positions_and_keeps_every_token():
    seqs = [Sequence(list(range(n)), [IGNORE] + list(range(1, n))) for n in (5, 3, 4, 2, 6)]
    rows = pack_sequences(seqs, pack_length=8)
    assert sum(r.n_examples for r in rows) == 5
    assert sum(len(r.input_ids) for r in rows) == 20
    assert all(len(r.input_ids) <= 8 for r in rows)
    for r in rows:
        starts = [i for i, p in enumerate(r.position_ids) if p == 0]
        assert all(r.label_ids[i] == IGNORE for i in starts)  # no prediction across examples
    batch = collate(rows, pad_id=0)
    assert "attention_mask" not in batch.tensors and "position_ids" in batch.tensors


def test_packed_loss_equals_unpacked_loss(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from tunelab.train.loss import CompletionLoss

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loss_model = CompletionLoss(model, "causal", "full")
    rng = random.Random(0)
    exs = [Ex([rng.randint(10, 900) for _ in range(rng.randint(2, 9))], [rng.randint(10, 900) for _ in range(3)])
           for _ in range(6)]
    seqs = to_sequences(exs)
    plain_sum, plain_n = loss_model(**collate(seqs, 0).tensors)
    rows = pack_sequences(seqs, pack_length=24)
    assert len(rows) < len(seqs)
    packed_sum, packed_n = loss_model(**collate(rows, 0).tensors)
    assert int(plain_n) == int(packed_n) == 18
    assert abs(plain_sum.item() - packed_sum.item()) < 1e-3


def test_kto_plan_never_leaves_an_example_alone_in_a_micro_batch():
    """min_part=2 (kto): a short batch fills fewer parts rather than parts of one, and a last batch
    of one joins the batch before it; every item once, and (where no batch joins another) the full
    batches as with min_part=1."""
    lengths = list(range(10, 33))  # 23 items
    for batch_size, grad_accum, world in [(2, 2, 1), (2, 1, 2), (3, 2, 2), (4, 1, 1), (2, 3, 1)]:
        for group in (True, False):
            plain = plan_steps(lengths, batch_size, grad_accum, world, group, seed=3, epoch=1)
            kto = plan_steps(lengths, batch_size, grad_accum, world, group, seed=3, epoch=1, min_part=2)
            assert sorted(i for step in kto for part in step for i in part) == list(range(23))
            assert all(len(part) != 1 for step in kto for part in step), (batch_size, grad_accum, world, kto)
            assert all(len(step) == grad_accum * world for step in kto)
            full = batch_size * grad_accum * world
            assert [s for s in kto if sum(map(len, s)) == full] == [s for s in plain if sum(map(len, s)) == full]
    # 23 = 5 x 4 + 3: the short batch of 3 is one part of 3 and one empty (not 2 + 1)
    assert [[len(p) for p in s] for s in plan_steps(lengths, 2, 2, 1, False, 0, 0, min_part=2)][-1] == [3, 0]
    # 23 = 11 x 2 + 1: the lone last item joins the batch before it
    assert [[len(p) for p in s] for s in plan_steps(lengths, 2, 1, 1, False, 0, 0, min_part=2)][-1] == [3]
