"""Attention for training on CPU: the model's own eager attention, recomputed in backward.

Measured on SmolLM2-135M LoRA, bf16, batch 8 x 256, 2-core AMD EPYC (benchmarks/train_bench.py
--profile): PyTorch's CPU flash-attention kernel (what "sdpa" runs on CPU) took 18% of a training
step, its backward alone 16%; the same attention as plain matmuls and a softmax ("eager", oneDNN's
bf16 GEMMs) made the whole step 21% faster. Eager attention keeps the (batch x heads x L x L)
probabilities for backward, though — about 0.85 GB for that model at L = 256, more than the speed
is worth. So backward recomputes them: the attention core runs under torch's non-reentrant
activation checkpointing, which keeps only its inputs (query, key, value, mask: kept anyway)
and re-runs the same operations in backward. Loss and gradients are bit-identical to "eager"
(tested on every causal family).

The function is each model's own `eager_attention_forward` (its module's), so softcapping,
sliding windows, sinks and scaling stay the family's. It is registered in transformers'
attention and mask interfaces under ATTENTION, and used only where it pays: training on CPU, a
causal LM whose attention the user did not choose (model.attn_implementation unset) and that
loaded with "sdpa", and a batch whose fp32 scores of one layer stay under SCORE_BUDGET bytes (the
forward and the recompute in backward each build them once, transiently). Validation and
evaluation (no gradients) run the eager function plainly.
"""

from __future__ import annotations

import sys

import torch
from torch.utils.checkpoint import checkpoint

ATTENTION = "tunelab_eager_recompute"
# One layer's fp32 attention scores (batch x heads x L x L x 4 bytes) built at once. Above this
# eager attention's passes over the scores (scale, mask, softmax, casts) no longer run from cache,
# and the flash kernel is faster as well as bounded in memory. Measured on SmolLM2-135M LoRA, 2-core
# AMD EPYC: 8 x 256 (19 MB) eager 21% faster than sdpa; 8 x 512 (75 MB) and 4 x 900 (117 MB) sdpa
# 10-35% faster than eager.
SCORE_BUDGET = 64 * 2**20


def _eager_function(module):
    return getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)


def recomputed_eager_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' attention-function signature: (attention output, no weights)."""
    eager = _eager_function(module)
    if not torch.is_grad_enabled():
        return eager(module, query, key, value, attention_mask, **kwargs)[0], None

    def core(q, k, v, mask):
        return eager(module, q, k, v, mask, **kwargs)[0]

    # dropout inside attention (training mode) replays the same mask: preserve_rng_state
    return checkpoint(core, query, key, value, attention_mask, use_reentrant=False), None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(ATTENTION, recomputed_eager_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, eager_mask)


def can_recompute_eager(model) -> bool:
    """Whether every attention module of `model` comes from a modeling file with an eager function."""
    found = False
    for module in model.modules():
        if type(module).__name__.endswith("Attention") and hasattr(module, "config"):
            if _eager_function(module) is None:
                return False
            found = True
    return found


def choose_training_attention(model, chosen: str | None, batch_size: int, max_length: int) -> str:
    """Switch `model` to ATTENTION where it pays (see the module docstring); the implementation
    training runs with."""
    config = model.config
    current = getattr(config, "_attn_implementation", None)
    heads = getattr(config, "num_attention_heads", None)
    if (chosen is not None or current != "sdpa" or config.is_encoder_decoder or heads is None
            or next(model.parameters()).device.type != "cpu"
            or batch_size * heads * max_length ** 2 * 4 > SCORE_BUDGET or not can_recompute_eager(model)):
        return current or "default"
    register()
    model.set_attn_implementation(ATTENTION)
    return ATTENTION
