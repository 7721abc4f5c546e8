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


def chunked_head_loss(head, hidden, targets, chunk: int = HEAD_CHUNK):
    """Summed cross-entropy of head(hidden) against targets, HEAD_CHUNK rows at a time.

    With gradients, each chunk is checkpointed: backward recomputes its logits instead of keeping
    them. Without gradients (validation) the chunks simply run one after another."""
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
