"""A preference pair in one row (prompt, chosen, rejected) gives each answer the log-probs, and
the LoRA parameters the gradients, that the two-row layout gives (train/preference_batches.py,
train/preference.py `shared_prompt_inputs`); the probe (train/probes.py) refuses it where a model
would not compute the same thing."""

from __future__ import annotations

import pytest
import torch

from tunelab.train.preference import completion_logps, shared_prompt_inputs
from tunelab.train.preference_batches import PreferenceItem, collate_preference
from tunelab.train.probes import shared_prompt_is_exact

# Prompts of 1 to 7 tokens, answers of 1 to 7: different widths pad the rows differently.
ITEMS = [PreferenceItem([5, 6, 7, 8], [9, 10, 11], [12, 13]),
         PreferenceItem([20, 21], [22, 23, 24, 25, 26], [27, 28, 29, 30, 31, 32, 33]),
         PreferenceItem([40, 41, 42, 43, 44, 45, 46], [47], [48, 49, 50]),
         PreferenceItem([60], [61, 62], [63])]


def tiny(model_type: str, attention: str, **config):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1,
                               eos_token_id=2, **config)
    model = AutoModelForCausalLM.from_config(cfg).eval()  # GPT-2's dropout would draw other masks per layout
    model.set_attn_implementation(attention)
    return model


def with_lora(model):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def logps_and_grads(model, batch, fast: bool):
    model.zero_grad()
    logps, counts = completion_logps(model, batch, fast)
    (logps * torch.linspace(0.5, 1.5, len(logps))).sum().backward()
    return logps.detach(), counts, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("model_type,attention,config", [
    ("llama", "eager", {}), ("llama", "sdpa", {}), ("qwen2", "sdpa", {}), ("gemma2", "eager", {"head_dim": 16}),
    ("gpt2", "eager", {})])
@pytest.mark.parametrize("fast", [True, False])
def test_one_row_per_pair_gives_the_two_row_logps_and_gradients(model_type, attention, config, fast):
    model = with_lora(tiny(model_type, attention, **config))
    assert shared_prompt_is_exact(model, 64)
    two = collate_preference(ITEMS, 0)
    one = collate_preference(ITEMS, 0, shared_prompt=True)
    assert "segments" in one.tensors and one.tensors["input_ids"].shape[0] == len(ITEMS)
    # the same real tokens (the pairs' two sequences), fewer computed positions
    assert one.real_tokens == two.real_tokens and one.padded_tokens < two.padded_tokens
    a, count_a, grads_a = logps_and_grads(model, two.tensors, fast)
    b, count_b, grads_b = logps_and_grads(model, one.tensors, fast)
    assert torch.equal(count_a, count_b)
    assert count_b.tolist() == [len(it.chosen_ids) for it in ITEMS] + [len(it.rejected_ids) for it in ITEMS]
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-4)
    for name, grad in grads_a.items():  # float32 summation order: within 1e-3 of the largest entry
        scale, diff = float(grad.abs().max()), float((grads_b[name] - grad).abs().max())
        assert scale > 0 and diff <= 1e-3 * scale, f"{name}: max difference {diff:.3g} (largest entry {scale:.3g})"


def test_the_mask_hides_the_chosen_answer_from_the_rejected_one():
    positions, mask, source, (rows, cols), slot = shared_prompt_inputs(torch.tensor([[3, 2, 2]]), 8, "bool", None)
    # row: p p p c c r r pad
    assert positions[0].tolist() == [0, 1, 2, 3, 4, 3, 4, 0]
    allowed = mask[0, 0].int().tolist()
    assert allowed[5] == [1, 1, 1, 0, 0, 1, 0, 0]  # the first rejected token: the prompt and itself
    assert allowed[4] == [1, 1, 1, 1, 1, 0, 0, 0]
    assert cols.tolist() == [3, 4, 5, 6] and slot.tolist() == [0, 0, 1, 1]
    assert source.tolist() == [2, 3, 2, 5]  # both answers' first tokens are predicted after the prompt
    additive = shared_prompt_inputs(torch.tensor([[3, 2, 2]]), 8, "additive", torch.float32)[1]
    assert torch.equal(additive[0, 0] == 0, mask[0, 0])


def test_the_probe_refuses_what_would_not_be_exact():
    # a sliding window shorter than a row: the 4D mask would replace the window
    windowed = tiny("mistral", "eager", sliding_window=16)
    assert not shared_prompt_is_exact(windowed, 64)
    assert shared_prompt_is_exact(windowed, 16)  # no row longer than the window: nothing to replace
    assert not shared_prompt_is_exact(windowed, None)  # rows of unknown length
    assert shared_prompt_is_exact(tiny("mistral", "eager", sliding_window=None), None)
    # Bloom builds ALiBi from a 2D mask and cannot take a 4D one: two rows per pair
    from transformers import BloomConfig, BloomForCausalLM

    bloom = BloomForCausalLM(BloomConfig(vocab_size=128, hidden_size=64, n_layer=2, n_head=4))
    assert not shared_prompt_is_exact(bloom, 64)


def test_an_empty_prompt_keeps_two_rows():
    items = [PreferenceItem([], [9, 10], [11]), *ITEMS[:1]]
    assert "segments" not in collate_preference(items, 0, shared_prompt=True).tensors


def test_each_micro_batch_takes_the_cheaper_layout():
    from transformers import AutoConfig

    from tunelab.train.preference import attention_weight
    from tunelab.train.preference_batches import one_row_pays

    weight = attention_weight(AutoConfig.for_model("llama", hidden_size=576, intermediate_size=1536,
                                                   num_attention_heads=9, num_key_value_heads=3))
    short = [PreferenceItem([1] * 100, [2] * 120, [3] * 150)] * 4  # one row of 370 vs two of 250
    long = [PreferenceItem([1] * 80, [2] * 430, [3] * 480)] * 4  # one row of 990 vs two of 560
    assert one_row_pays(short, weight) and not one_row_pays(long, weight)
    assert one_row_pays(long, 0.0)  # positions alone always favour one row
    assert "segments" not in collate_preference(long, 0, shared_prompt=True, attention_weight=weight).tensors
    assert "segments" in collate_preference(short, 0, shared_prompt=True, attention_weight=weight).tensors
    # a model whose linear layers dwarf attention shares the prompt even for long pairs
    big = attention_weight(AutoConfig.for_model("llama", hidden_size=4096, intermediate_size=14336,
                                                num_attention_heads=32, num_key_value_heads=8))
    assert one_row_pays(long, big)


def test_a_stored_reference_is_the_starting_policy_in_the_layout_each_micro_batch_takes():
    """Full fine-tuning stores the reference log-probs once (train/preference.py
    store_reference_logps). In bf16 the one-row and the two-row layout round differently, so the
    reference is stored for each layout and a micro-batch carries its own layout's: before any
    step the policy's log-probs then equal it exactly (eager attention), whatever the micro-batch
    and its layout, so the implicit rewards start at 0. The model is big enough for the layouts
    to differ in bf16 (a 64-wide one computes them identically)."""
    import contextlib
    import random
    from types import SimpleNamespace

    from transformers import AutoConfig, AutoModelForCausalLM

    from tunelab.train.preference import PreferenceLoss, store_reference_logps
    from tunelab.train.preference_batches import preference_items

    torch.manual_seed(0)
    cfg = AutoConfig.for_model("llama", vocab_size=512, hidden_size=576, intermediate_size=1536, num_hidden_layers=4,
                               num_attention_heads=9, num_key_value_heads=3, pad_token_id=0)
    model = AutoModelForCausalLM.from_config(cfg).eval().to(torch.bfloat16)
    model.set_attn_implementation("eager")
    rng = random.Random(0)

    def tokens(n):
        return [rng.randrange(3, 512) for _ in range(n)]

    examples = [SimpleNamespace(prompt_ids=tokens(rng.randint(5, 40)), target_ids=tokens(rng.randint(30, 160)),
                                rejected_ids=tokens(rng.randint(30, 160)), desirable=None, reference_logps=None,
                                source=f"pairs.jsonl:{i + 1}") for i in range(7)]
    examples.append(SimpleNamespace(prompt_ids=[], target_ids=tokens(40), rejected_ids=tokens(50), desirable=None,
                                    reference_logps=None, source="pairs.jsonl:8"))  # no prompt: two rows only
    loss_model = PreferenceLoss(model, "causal", "full", "dpo", SimpleNamespace(beta=0.1), max_length=256)
    assert loss_model.shared_prompt
    data = SimpleNamespace(tasks={"pairs": SimpleNamespace(splits={"train": examples})})
    store_reference_logps(loss_model, data, contextlib.nullcontext, "cpu", batch_size=3, pad_id=0)
    assert [set(ex.reference_logps) for ex in examples] == [{"one", "two"}] * 7 + [{"two"}]
    gap = max(abs(a - b) for ex in examples[:7] for a, b in zip(ex.reference_logps["one"], ex.reference_logps["two"]))
    assert gap > 1e-3, "the layouts agree on this model: the test would not see a reference from the wrong one"

    items = preference_items(examples, "dpo", stored_reference=True)[::-1]  # other micro-batches than the store's
    with torch.no_grad():
        for group in (items[:2], items[2:7], items[7:], items[1:5]):
            for layout in ("one", "two"):
                if layout == "one" and not all(it.prompt_ids for it in group):
                    continue
                batch = collate_preference(group, 0, layout=layout).tensors
                logps, _ = loss_model.logps(batch)
                assert torch.equal(logps.float(), batch["ref_logps"]), (layout, logps, batch["ref_logps"])
