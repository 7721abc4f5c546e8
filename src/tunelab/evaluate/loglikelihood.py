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
                   counter: WorkCounter | None = None, max_length: int | None = None, progress=None,
                   on_batch=None) -> list[dict]:
    """[(context_ids, cont_ids)] -> [{"logprob", "is_greedy", "n_tokens"}] in input order.
    on_batch(indices, results) is called as each batch finishes."""
    from tunelab.evaluate.views import as_causal_lm, is_encoder_decoder

    if is_encoder_decoder(model):  # the context is the encoder's input: one group of one option each
        done = on_batch and (lambda idx, outs: on_batch(idx, [o[0] for o in outs]))
        groups = [(list(ctx), [list(cont)]) for ctx, cont in requests]
        return [g[0] for g in score_shared_context(model, groups, batch_size, pad_id, counter, progress, done)]
    model = as_causal_lm(model)  # prompt/prefix tuning: views.py
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
        if on_batch is not None:
            on_batch(batch, [results[i] for i in batch])
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]


@torch.inference_mode()
def score_shared_context(model, groups: list[tuple[list[int], list[list[int]]]], batch_size: int = 8, pad_id: int = 0,
                         counter: WorkCounter | None = None, progress=None, on_batch=None) -> list[list[dict]]:
    """Multiple choice: [(context_ids, [option_ids, ...])] -> per group, one result per option.

    The context runs once per question (left padded); its last logits give every option's first
    token, so one-token options (MMLU's " A".." D") cost nothing more. Longer options continue
    from the context's KV cache, copied per option: about n_options times less work than scoring
    context + option from scratch, with the same log-likelihoods up to float rounding.
    """
    from tunelab.evaluate.generation import _accepts, _cache_kwarg, _returned_cache
    from tunelab.evaluate.views import as_causal_lm
    from transformers import DynamicCache

    model = as_causal_lm(model)  # encoder-decoders and prompt/prefix tuning: views.py
    counter = counter or WorkCounter()
    device = next(model.parameters()).device
    cache_arg = _cache_kwarg(model)
    keep1 = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    results: list[list[dict] | None] = [None] * len(groups)
    for batch in length_sorted_batches([len(g[0]) for g in groups], max(1, batch_size)):
        width = max(len(groups[i][0]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            ctx = groups[i][0]
            ids[r, width - len(ctx):] = torch.tensor(ctx)
            mask[r, width - len(ctx):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        owner = [r for r, i in enumerate(batch) for _ in groups[i][1]]
        options = [opt for i in batch for opt in groups[i][1]]
        longer = [k for k, o in enumerate(options) if len(o) > 1]
        cache_kw = {"use_cache": True, cache_arg: DynamicCache()} if longer else {"use_cache": False}
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    **cache_kw, **keep1)
        counter.forward_calls += 1
        counter.prompt_tokens += int(mask.sum())
        first_lp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # predicts each option's first token
        rest = {}  # option k -> log-probs predicting its tokens 1.. (from its own positions 0..)
        if longer:
            lp = _continued_logprobs(model, _returned_cache(out, None), cache_arg, [owner[k] for k in longer],
                                     [options[k] for k in longer], mask, positions, pad_id, counter)
            rest = {k: lp[j] for j, k in enumerate(longer)}
        k = 0
        for r, i in enumerate(batch):
            group_out = []
            for o in groups[i][1]:
                targets = torch.tensor(o, device=first_lp.device)
                # token 0 from the context's last logits, token t from the option's logits at t - 1
                rows = torch.cat([first_lp[r: r + 1], rest[k][: len(o) - 1]], dim=0) if k in rest else first_lp[r: r + 1]
                token_lp = rows.gather(-1, targets[:, None])[:, 0]
                group_out.append({"logprob": float(token_lp.sum()), "n_tokens": len(o),
                                  "is_greedy": bool((rows.argmax(-1) == targets).all())})
                k += 1
            results[i] = group_out
        if on_batch is not None:
            on_batch(batch, [results[i] for i in batch])
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]


def _continued_logprobs(model, cache, cache_arg: str, owner: list[int], options: list[list[int]], mask, positions,
                        pad_id: int, counter: WorkCounter) -> torch.Tensor:
    """Log-probs over each option's own positions, continuing its owner row's context cache."""
    device = next(model.parameters()).device
    cache.batch_select_indices(torch.tensor(owner, device=device))
    cont_width = max(len(o) for o in options)
    opt_ids = torch.full((len(options), cont_width), pad_id, dtype=torch.long)
    opt_mask = torch.zeros((len(options), cont_width), dtype=torch.long)
    for k, o in enumerate(options):
        opt_ids[k, : len(o)] = torch.tensor(o)
        opt_mask[k, : len(o)] = 1  # right padding after an option cannot change it (causal)
    opt_pos = positions[owner, -1:] + 1 + torch.arange(cont_width)[None, :]
    full_mask = torch.cat([mask[owner], opt_mask], dim=1)
    logits = model(input_ids=opt_ids.to(device), attention_mask=full_mask.to(device),
                   position_ids=opt_pos.to(device), use_cache=True, **{cache_arg: cache}).logits.float()
    counter.forward_calls += 1
    counter.prompt_tokens += int(opt_mask.sum())
    return torch.log_softmax(logits, dim=-1)
