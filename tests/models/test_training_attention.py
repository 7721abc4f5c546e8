"""Training attention on CPU (train/attention.py): each family's own eager attention recomputed in
backward gives the loss and gradients of "eager" bit for bit, keeps less for backward, agrees with
"sdpa" within float tolerance, and is chosen only where it pays."""

from __future__ import annotations

import copy

import pytest
import torch

from families import CAUSAL
from tunelab.train.attention import ATTENTION, SCORE_BUDGET, can_recompute_eager, choose_training_attention, register
from tunelab.train.batching import IGNORE, collate, to_sequences
from tunelab.train.loss import CompletionLoss


def step(model, batch, autocast: bool) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """(loss, gradients, bytes kept for backward beyond the weights)."""
    kept: dict[int, int] = {}

    def pack(t):
        kept.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    loss_model = CompletionLoss(model, "causal", "full")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss_sum, n = loss_model(**batch)
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = sum(p.untyped_storage().nbytes() for p in model.parameters())
    return loss_sum.detach(), list(torch.autograd.grad(loss_sum / n, trainable)), sum(kept.values()) - weights


def with_attention(model, name: str):
    model = copy.deepcopy(model).train()
    model.set_attn_implementation(name)
    return model


@pytest.mark.parametrize("family", CAUSAL)
def test_recomputed_eager_attention_is_eager_bit_for_bit_and_keeps_less(family_model, tokenizer, family):
    plain, _ = family_model(family)
    if not can_recompute_eager(plain):  # Falcon: no eager function in its modeling file, keeps its own
        current = plain.config._attn_implementation
        assert choose_training_attention(plain, None, 2, 64) == current == plain.config._attn_implementation
        return
    register()
    # long enough that the L x L probabilities eager keeps outweigh the inputs the recompute keeps
    ids = tokenizer([" ".join(["The film was good and the cast was great."] * 6), "Dull"],
                    add_special_tokens=False)["input_ids"]
    seqs = [type("S", (), {"input_ids": x, "label_ids": [IGNORE] * 2 + x[2:]})() for x in ids]
    batch = collate(to_sequences(seqs), tokenizer.pad_token_id).tensors  # padded: the mask matters
    results = {}
    for name in ("eager", ATTENTION):
        torch.manual_seed(1)  # attention dropout (GPT-2, ...) draws the same masks
        results[name] = step(with_attention(plain, name), batch, autocast=True)
    (loss_a, grads_a, kept_a), (loss_b, grads_b, kept_b) = results["eager"], results[ATTENTION]
    assert torch.equal(loss_a, loss_b)
    assert len(grads_a) == len(grads_b) > 0 and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert kept_b < kept_a
    if plain.config._attn_implementation == "sdpa":  # the implementation it replaces in training
        sdpa = with_attention(plain, "sdpa").eval()  # no dropout: the two compute the same function
        ours = with_attention(plain, ATTENTION).eval()
        loss_s, grads_s, _ = step(sdpa, batch, autocast=False)
        loss_o, grads_o, _ = step(ours, batch, autocast=False)
        torch.testing.assert_close(loss_o, loss_s, rtol=1e-5, atol=1e-5)
        for a, b in zip(grads_o, grads_s):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_chosen_only_where_it_pays(family_model):
    model, _ = family_model("llama")
    assert model.config._attn_implementation == "sdpa"
    heads = model.config.num_attention_heads
    assert choose_training_attention(model, "sdpa", 8, 256) == "sdpa"  # the user's choice stays
    too_long = int((SCORE_BUDGET / (8 * heads * 4)) ** 0.5) + 1  # one layer's scores over the budget
    assert choose_training_attention(model, None, 8, too_long) == "sdpa"
    assert model.config._attn_implementation == "sdpa"
    assert choose_training_attention(model, None, 8, 256) == ATTENTION
    assert model.config._attn_implementation == ATTENTION
    with torch.no_grad():  # validation runs the eager function plainly
        model.eval()(input_ids=torch.tensor([[1, 2, 3]]))
