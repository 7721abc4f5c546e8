"""Log-likelihood of continuations: multiple-choice scoring and perplexity share this engine.

A request is (context ids, continuation ids). One forward pass over context + continuation gives
log P(continuation | context) summed over its tokens, and whether greedy decoding would have
produced it (lm-eval's `is_greedy`). Batches are length-sorted and left-padded with positions
taken from the mask (as in generation), so every continuation ends at the last column and the
LM head runs only over the last `max continuation + 1` columns (`logits_to_keep`): on a 135M
model with a 49k vocabulary the head and the log-softmax over every prompt position cost more
than the layers.
"""

from __future__ import annotations

import torch

from tunelab.evaluate.generation import WorkCounter, length_sorted_batches


def continuation_ids(tokenizer, context_text: str, continuation: str) -> list[int]:
    """Tokens of `continuation` as they appear after `context_text` (lm-eval's split of the whole)."""
    whole = tokenizer(context_text + continuation, add_special_tokens=False)["input_ids"]
    context = tokenizer(context_text, add_special_tokens=False)["input_ids"]
    if whole[: len(context)] == context and len(whole) > len(context):
        return whole[len(context):]
    return tokenizer(continuation, add_special_tokens=False)["input_ids"]


def _logits_to_keep_supported(model) -> bool:
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


@torch.inference_mode()
def score_requests(model, requests: list[tuple[list[int], list[int]]], batch_size: int = 8, pad_id: int = 0,
                   counter: WorkCounter | None = None, max_length: int | None = None, progress=None) -> list[dict]:
    """[(context_ids, cont_ids)] -> [{"logprob", "is_greedy", "n_tokens"}] in input order."""
    counter = counter or WorkCounter()
    device = next(model.parameters()).device
    seqs = []
    for ctx, cont in requests:
        if not cont:
            raise ValueError("empty continuation")
        seq = list(ctx) + list(cont)
        if max_length and len(seq) > max_length:  # keep the continuation, drop the oldest context
            seq = seq[-max_length:]
        seqs.append(seq)
    results: list[dict | None] = [None] * len(requests)
    keep_kw = _logits_to_keep_supported(model)
    for batch in length_sorted_batches([len(s) for s in seqs], max(1, batch_size)):
        width = max(len(seqs[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, width - len(seqs[i]):] = torch.tensor(seqs[i])
            mask[r, width - len(seqs[i]):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = min(width, max(len(requests[i][1]) for i in batch) + 1)
        extra = {"logits_to_keep": keep} if keep_kw else {}
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       **extra).logits.float()
        logits = logits[:, -keep:, :]  # column j holds the prediction for token width - keep + j + 1
        counter.forward_calls += 1
        counter.prompt_tokens += int(mask.sum())
        logprobs = torch.log_softmax(logits, dim=-1)
        for r, i in enumerate(batch):
            n_cont = len(requests[i][1])
            targets = torch.tensor(seqs[i][len(seqs[i]) - n_cont:], device=logprobs.device)
            rows = logprobs[r, keep - n_cont - 1: keep - 1]  # the logits at t predict token t + 1
            token_lp = rows.gather(-1, targets[:, None])[:, 0]
            results[i] = {"logprob": float(token_lp.sum()), "n_tokens": n_cont,
                          "is_greedy": bool((rows.argmax(-1) == targets).all())}
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]
