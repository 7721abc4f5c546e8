"""Log-likelihood of continuations: multiple-choice scoring and perplexity share this engine.

A request is (context ids, continuation ids). One forward pass over context + continuation gives
log P(continuation | context) summed over its tokens, and whether greedy decoding would have
produced it (lm-eval's `is_greedy`). Batches are length-sorted and right-padded: with a causal
mask, padding after a sequence cannot change it, and each row's positions start at 0.
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
    for batch in length_sorted_batches([len(s) for s in seqs], max(1, batch_size)):
        width = max(len(seqs[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[r, : len(seqs[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        counter.forward_calls += 1
        counter.prompt_tokens += int(mask.sum())
        logprobs = torch.log_softmax(logits, dim=-1)
        for r, i in enumerate(batch):
            n_cont, n = len(requests[i][1]), len(seqs[i])
            targets = torch.tensor(seqs[i][n - n_cont:], device=logprobs.device)
            rows = logprobs[r, n - n_cont - 1: n - 1]  # the logits at t predict token t + 1
            token_lp = rows.gather(-1, targets[:, None])[:, 0]
            results[i] = {"logprob": float(token_lp.sum()), "n_tokens": n_cont,
                          "is_greedy": bool((rows.argmax(-1) == targets).all())}
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]
