"""Completion-only cross-entropy, returned as (sum over label tokens, number of label tokens).

Sums, not means, so that gradient accumulation and several processes can divide by the number
of label tokens of the whole optimizer step: the result does not depend on how the step's
examples were split into micro-batches.

The fast path (causal LMs, LoRA/DoRA/IA3/full/freeze) runs the transformer body, gathers the
hidden states at positions that have a label, and applies the LM head only there: only when a
probe at construction shows that head(body(x)) is the model's own logits (probes.py). On
SmolLM2-135M the head (576 x 49152) is about a fifth of the forward pass, and most positions are
prompt.
The head and the cross-entropy then run in chunks of label positions, recomputed in backward
(activation checkpointing of the head only): the (tokens x vocabulary) logits, their fp32 copy
and their gradient never exist all at once. Measured on SmolLM2 LoRA, batch 8 x 256: peak memory
-1 GB, the same tokens/s.
A frozen head (LoRA and the other adapters: no weight gradient) goes further: `FrozenHeadLoss`
computes the hidden states' gradient in forward, chunk by chunk, while the chunk's logits exist
(softmax - one-hot, times the head's weight), and keeps only that (label positions x hidden)
gradient for backward. Backward then scales it: no second head matmul, no second log-softmax,
no fp32 logits copy or zero-filled NLL gradient in backward. The loss is the same number (the
same log-softmax and NLL); the gradient differs by bf16 rounding only (the loss' scale is applied
after the bf16 matmul instead of before it; tests/train/test_train_loss_optim.py bounds it).
Measured on SmolLM2-135M LoRA, 650 label positions, 2-core AMD EPYC: head + loss forward and
backward 0.54-0.61 s -> 0.32 s. Written here because torch has no fused linear + cross-entropy
on CPU (Liger-Kernel's is a Triton kernel for CUDA).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tunelab.models.tuners import METHODS
from tunelab.train.batching import IGNORE
from tunelab.train.probes import base_lm, fast_path_is_exact

# Label positions per chunk of the LM head + cross-entropy (256 x 49152 fp32 logits = 50 MB).
HEAD_CHUNK = 256


def peft_forward(method: str) -> bool:
    """Whether the method's forward is not a plain pass through the base model (virtual tokens,
    prefixes: tunelab.models.tuners says which)."""
    spec = METHODS.get(method)
    return spec is not None and spec.peft_forward


def can_skip_masked_head(model, architecture: str, method: str) -> bool:
    if architecture != "causal" or peft_forward(method):
        return False
    # Families that change the logits after the head (Gemma-2 soft-capping, Cohere's logit_scale,
    # Granite's logits_scaling, ...) fail this probe and keep their own forward (probes.py).
    return fast_path_is_exact(model)


class CompletionLoss(nn.Module):
    """Wraps the model so that DDP sees one forward: batch tensors in, (loss_sum, n_tokens) out."""

    def __init__(self, model, architecture: str, method: str):
        super().__init__()
        self.model = model
        self.architecture = architecture
        self.skip_masked_head = can_skip_masked_head(model, architecture, method)

    def forward(self, input_ids, labels, attention_mask=None, position_ids=None):
        if self.skip_masked_head:
            lm = base_lm(self.model)
            body = getattr(lm, lm.base_model_prefix)
            hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            keep = targets != IGNORE
            return chunked_head_loss(lm.get_output_embeddings(), hidden[:, :-1][keep], targets[keep]), keep.sum()
        if self.architecture == "seq2seq":
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                                use_cache=False).logits
            keep = labels != IGNORE
            return F.cross_entropy(logits[keep].float(), labels[keep], reduction="sum"), keep.sum()
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        logits = self.model(**kwargs, use_cache=False).logits
        # Prompt tuning prepends virtual tokens to the logits; the last positions are the input's.
        logits = logits[:, -input_ids.shape[1]:]
        targets = labels[:, 1:]
        keep = targets != IGNORE
        return F.cross_entropy(logits[:, :-1][keep].float(), targets[keep], reduction="sum"), keep.sum()


def _head_loss(head, hidden, targets):
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")


class FrozenHeadLoss(torch.autograd.Function):
    """Summed cross-entropy of hidden @ weight^T against targets, `chunk` rows at a time, for a
    frozen weight; the gradient of `hidden` is computed in forward (module docstring)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int):
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        rows = torch.arange(min(chunk, len(targets)), device=hidden.device)
        for s in range(0, len(targets), chunk):
            h, t = hidden[s:s + chunk], targets[s:s + chunk]
            # the same operations as F.cross_entropy(head(h).float(), t, reduction="sum")
            log_probs = F.log_softmax(torch.mm(h, weight.t()).float(), dim=-1)
            total += F.nll_loss(log_probs, t, reduction="sum")
            if grad is not None:  # d(sum of -log p(target)) / d logits = softmax - one-hot
                probs = log_probs.exp_()
                probs[rows[:len(t)], t] -= 1.0
                torch.mm(probs.to(h.dtype), weight, out=grad[s:s + chunk])
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None  # one rounding: the scalar stays fp32


def frozen_head(head) -> bool:
    """Whether FrozenHeadLoss computes `head`'s loss: a plain bias-free linear, weight frozen."""
    return type(head) is nn.Linear and head.bias is None and not head.weight.requires_grad


def chunked_head_loss(head, hidden, targets, chunk: int = HEAD_CHUNK):
    """Summed cross-entropy of head(hidden) against targets, HEAD_CHUNK rows at a time.

    With gradients, a frozen head runs FrozenHeadLoss; any other head's chunks are checkpointed:
    backward recomputes their logits instead of keeping them. Without gradients (validation) the
    chunks simply run one after another."""
    if torch.is_grad_enabled() and hidden.requires_grad and frozen_head(head):
        weight, device = head.weight, hidden.device.type
        if torch.is_autocast_enabled(device):  # the dtype autocast would run the head's matmul in
            dtype = torch.get_autocast_dtype(device)
            hidden, weight = hidden.to(dtype), weight.to(dtype)
        with torch.autocast(device, enabled=False):
            return FrozenHeadLoss.apply(hidden, weight.to(hidden.dtype), targets, chunk)
    if len(targets) <= chunk:
        return _head_loss(head, hidden, targets)
    total = None
    for s in range(0, len(targets), chunk):
        h, t = hidden[s:s + chunk], targets[s:s + chunk]
        part = checkpoint(_head_loss, head, h, t, use_reentrant=False) if torch.is_grad_enabled() \
            else _head_loss(head, h, t)
        total = part if total is None else total + part
    return total


def mean_loss(loss_sum: torch.Tensor, n_tokens) -> float:
    n = int(n_tokens)
    return float(loss_sum) / n if n else float("nan")
