"""train.selective_recompute (train/recompute.py): the same loss and gradients, bit for bit, with
fewer bytes kept for backward — on every causal family, LoRA (on a bf16 base) and full
fine-tuning, under bf16 autocast, as training sets them up."""

from __future__ import annotations

import copy

import pytest
import torch

from families import CAUSAL
from tunelab.config.train import TrainConfig
from tunelab.models.tuners import apply_method
from tunelab.train.batching import IGNORE, collate, to_sequences
from tunelab.train.loss import CompletionLoss
from tunelab.train.recompute import (_recomputed_mlp_forward, _recomputed_norm_forward,
                                      enable_selective_recompute)
from tunelab.train.setup import keep_adapter_inputs_in_autocast_dtype

# family -> (RMSNorms, gated MLPs) wrapped in the 2-layer models; not listed: (0, 0) (LayerNorm
# families). Phi-3 fuses gate_up_proj, the MoE blocks have no gate_proj, Cohere's norm is a LayerNorm.
WRAPPED = {"llama": (5, 2), "mistral": (5, 2), "qwen2": (5, 2), "gemma": (5, 2), "granite": (5, 2),
           "olmo2": (9, 2), "qwen3": (9, 2), "gemma2": (9, 2), "gemma3": (13, 2), "phi3": (5, 0),
           "mixtral": (5, 0), "qwen3_moe": (9, 0), "cohere": (0, 2)}


def step(model, batch) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """(loss, gradients of the trainable weights, bytes of the storages kept for backward)."""
    kept: dict[int, int] = {}

    def pack(t):
        kept.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    loss_model = CompletionLoss(model, "causal", "lora")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        loss_sum, n = loss_model(**batch)
    trainable = [p for p in model.parameters() if p.requires_grad]
    weights = sum(p.untyped_storage().nbytes() for p in model.parameters())  # kept by reference, not new memory
    return loss_sum.detach(), list(torch.autograd.grad(loss_sum / n, trainable)), sum(kept.values()) - weights


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("family", CAUSAL)
def test_recomputed_norms_and_mlps_give_the_same_gradients_and_keep_less(family_model, tokenizer, family, method):
    plain, _ = family_model(family)
    recomputed = copy.deepcopy(plain)
    counts = enable_selective_recompute(recomputed)
    cfg = TrainConfig(method=method, lora={"r": 4})
    models = []
    for model in (plain, recomputed):
        if method == "lora":  # as training sets LoRA up (train/setup.py): a bf16 base, fp32 adapters
            model.to(torch.bfloat16)
        torch.manual_seed(0)  # LoRA's A initialised the same in both
        model = apply_method(model, cfg, "causal", model.name_or_path).train()
        keep_adapter_inputs_in_autocast_dtype(model)
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        with torch.no_grad():  # LoRA's B off zero, the same in both
            for p in model.parameters():
                if p.requires_grad and method == "lora":
                    p.add_(torch.randn(p.shape) * 0.05)
        models.append(model)
    ids = tokenizer(["The film was good and the cast was great", "Dull"], add_special_tokens=False)["input_ids"]
    seqs = [type("S", (), {"input_ids": x, "label_ids": [IGNORE] * 2 + x[2:]})() for x in ids]
    batch = collate(to_sequences(seqs), tokenizer.pad_token_id).tensors
    torch.manual_seed(1)  # dropout (GPT-2, OPT, ...) draws the same masks in both
    loss_a, grads_a, kept_a = step(models[0], batch)
    torch.manual_seed(1)
    loss_b, grads_b, kept_b = step(models[1], batch)
    assert torch.equal(loss_a, loss_b)
    assert len(grads_a) == len(grads_b) > 0
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert (counts["norms"], counts["mlps"]) == WRAPPED.get(family, (0, 0))
    assert kept_b < kept_a if family in WRAPPED else kept_b == kept_a
    # still wrapped after train()/eval(): transformers >= 5.25 re-kernelizes hub-kernel layers
    # (RMSNorm) on every mode change and drops an instance `forward` (train/recompute.py)
    models[1].eval().train()
    wrapped = [m for m in models[1].modules() if getattr(m, "_selective_recompute", False)]
    assert len(wrapped) == sum(counts.values())
    assert all(m.forward.__func__ in (_recomputed_norm_forward, _recomputed_mlp_forward) for m in wrapped)
