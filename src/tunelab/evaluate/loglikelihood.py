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
from tunelab.evaluate.padding import left_pad
from tunelab.evaluate.shard import ONE, World, mine
from tunelab.signals import check as check_stop


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
                   on_batch=None, world: World = ONE) -> list[dict]:
    """[(context_ids, cont_ids)] -> [{"logprob", "is_greedy", "n_tokens"}] in input order.
    on_batch(indices, results) is called as each batch finishes. Several processes (world,
    shard.py): only this process's batches are scored; the others' results are None."""
    from tunelab.evaluate.views import as_causal_lm, is_encoder_decoder

    if is_encoder_decoder(model):  # the context is the encoder's input: one group of one option each
        done = on_batch and (lambda idx, outs: on_batch(idx, [o[0] for o in outs]))
        groups = [(list(ctx), [list(cont)]) for ctx, cont in requests]
        found = score_shared_context(model, groups, batch_size, pad_id, counter, progress, done, world)
        return [g[0] if g is not None else None for g in found]
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
    for batch in mine(length_sorted_batches([len(s) for s in seqs], max(1, batch_size)), world, progress):
        check_stop()  # a signal held back by training (validation) stops between batches
        ids, mask, positions = left_pad([seqs[i] for i in batch], pad_id)
        width = ids.shape[1]
        keep = min(width, max(len(requests[i][1]) for i in batch) + 1)
        extra = {"logits_to_keep": keep} if keep_kw else {}
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                       **extra).logits
        logits = logits[:, -keep:, :]  # column j holds the prediction for token width - keep + j + 1
        counter.forward_calls += 1
        counter.prompt_tokens += int(mask.sum())
        for r, i in enumerate(batch):
            n_cont = len(requests[i][1])
            targets = torch.tensor(seqs[i][len(seqs[i]) - n_cont:], device=logits.device)
            # the logits at t predict token t + 1; float32 log-softmax one row's scored positions at
            # a time (the whole batch's at once held batch x positions x vocabulary floats twice)
            rows = torch.log_softmax(logits[r, keep - n_cont - 1: keep - 1].float(), dim=-1)
            token_lp = rows.gather(-1, targets[:, None])[:, 0]
            results[i] = {"logprob": float(token_lp.sum()), "n_tokens": n_cont,
                          "is_greedy": bool((rows.argmax(-1) == targets).all())}
        if on_batch is not None:
            on_batch(batch, [results[i] for i in batch])
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]


# Prefix sharing (score_shared_context): a run of contexts that start with the same tokens (a
# task description, few-shot examples) runs them once. A run needs MIN_SHARED_PREFIX tokens and
# MIN_RUN questions: smaller ones would cost more in extra calls and half-empty batches than they save.
MIN_SHARED_PREFIX = 8
MIN_RUN = 8


@torch.inference_mode()
def score_shared_context(model, groups: list[tuple[list[int], list[list[int]]]], batch_size: int = 8, pad_id: int = 0,
                         counter: WorkCounter | None = None, progress=None, on_batch=None,
                         world: World = ONE) -> list[list[dict]]:
    """Multiple choice: [(context_ids, [option_ids, ...])] -> per group, one result per option.

    Work is shared three ways, with the same log-likelihoods up to float rounding:
    - runs of questions whose contexts start with the same tokens (a task description; 5-shot
      MMLU: the five dev examples of a subject) run that prefix once (shared_prefix_runs); its KV
      cache is copied per batch row;
    - each context runs once per question (left padded); its last logits give every option's first
      token, so one-token options (MMLU's " A".." D") cost nothing more;
    - longer options continue from the context's KV cache, copied per option.
    Several processes (world, shard.py): the runs and batches are planned over every group, then
    only this process's batches are scored (the others' results are None).
    """
    from tunelab.evaluate.generation import _accepts, _cache_kwarg
    from tunelab.evaluate.views import as_causal_lm

    causal = as_causal_lm(model)  # encoder-decoders and prompt/prefix tuning: views.py
    counter = counter or WorkCounter()
    cache_arg = _cache_kwarg(causal)
    keep1 = {"logits_to_keep": 1} if _accepts(causal, "logits_to_keep") else {}
    contexts = [g[0] for g in groups]
    # A view adds its own inputs (an encoder, virtual tokens) around the context, and a sliding
    # window counts cache slots, which the padding between prefix and suffix would shift: no sharing.
    window = sliding_window(model)
    longest = max((len(ctx) + max(map(len, opts), default=0) for ctx, opts in groups), default=0)
    share = causal is model and (window is None or longest <= window)
    runs = shared_prefix_runs(contexts) if share else [(0, list(range(len(groups))))]
    # The whole plan first (each batch with its run), so several processes split the same batches.
    plan = [(r, [members[j] for j in batch]) for r, (prefix_len, members) in enumerate(runs)
            for batch in length_sorted_batches([len(contexts[i]) - prefix_len for i in members], max(1, batch_size))]
    results: list[list[dict] | None] = [None] * len(groups)
    prefix_of = (None, None)  # (run, its prefix's KV cache): a run's batches come one after another
    for r, batch in mine(plan, world, progress, items=lambda entry: len(entry[1])):
        check_stop()
        prefix_len, members = runs[r]
        if prefix_len and prefix_of[0] != r:
            prefix_of = (r, _prefix_cache(causal, contexts[members[0]][:prefix_len], cache_arg, keep1, counter))
        found = _score_batch(causal, [groups[i] for i in batch], prefix_len, prefix_of[1] if prefix_len else None,
                             cache_arg, keep1, pad_id, counter)
        for i, out in zip(batch, found):
            results[i] = out
        if on_batch is not None:
            on_batch(batch, [results[i] for i in batch])
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]


def shared_prefix_runs(contexts: list[list[int]], min_shared: int = MIN_SHARED_PREFIX,
                       min_run: int = MIN_RUN) -> list[tuple[int, list[int]]]:
    """[(prefix length, indices)]: the runs of contexts that share a prefix, chosen to save the most
    prefix tokens, and one run of prefix length 0 for the rest; every index exactly once.

    In sorted order, a run's shared prefix is its weakest neighbour link. A range either stays one
    run (saving (n - 1) x prefix) or splits at its weakest links into ranges that share more (5-shot
    MMLU: every subject starts with the same 11 tokens, each subject's questions with the same ~500),
    whichever saves more. Every context keeps at least one token after its prefix (its last logits
    score the options). Iterative, not recursive: a chain of nested prefixes can be deep."""
    order = sorted(range(len(contexts)), key=contexts.__getitem__)
    links = [_common_length(contexts[a], contexts[b]) for a, b in zip(order, order[1:])]
    best: dict[tuple[int, int], tuple[int, list]] = {}  # (lo, hi) of order -> (tokens saved, runs)
    stack = [(0, len(order), False)]
    while stack:
        lo, hi, parts_done = stack.pop()
        if hi - lo < min_run:
            best[lo, hi] = (0, [])
            continue
        weakest = min(links[lo:hi - 1])
        cuts = [lo] + [k + 1 for k in range(lo, hi - 1) if links[k] == weakest] + [hi]
        parts = list(zip(cuts, cuts[1:]))
        if not parts_done:
            stack.append((lo, hi, True))
            stack.extend((a, b, False) for a, b in parts)
            continue
        members = order[lo:hi]
        prefix = min(weakest, min(len(contexts[i]) for i in members) - 1)
        whole = (hi - lo - 1) * prefix if prefix >= min_shared else 0
        split = sum(best[part][0] for part in parts)
        best[lo, hi] = (whole, [(prefix, members)]) if whole and whole >= split else \
            (split, [run for part in parts for run in best[part][1]])
    runs = best[0, len(order)][1] if order else []
    shared = {i for _, members in runs for i in members}
    alone = [i for i in range(len(contexts)) if i not in shared]
    return runs + ([(0, alone)] if alone else [])


def sliding_window(model) -> int | None:
    """The shortest attention window some layer of the model uses (Mistral's and Gemma-2/3's
    sliding windows, Llama-4's attention chunks), else None. Shared by evaluation's KV-cache
    sharing and training's one-row preference pairs (train/probes.py): both need every layer to
    see the whole sequence."""
    from tunelab.evaluate.views import inner_model

    config = inner_model(model).config
    config = getattr(config, "text_config", None) or config
    layer_types = getattr(config, "layer_types", None)
    if layer_types and all(t == "full_attention" for t in layer_types):
        return None
    # Qwen2 keeps a sliding_window in its config and switches it off with use_sliding_window
    sliding = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    windows = [w for w in (sliding, getattr(config, "attention_chunk_size", None)) if isinstance(w, int) and w > 0]
    return min(windows) if windows else None


def _common_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _prefix_cache(model, prefix: list[int], cache_arg: str, keep1: dict, counter: WorkCounter):
    from tunelab.evaluate.generation import _returned_cache
    from transformers import DynamicCache

    device = next(model.parameters()).device
    ids = torch.tensor([prefix], device=device)
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.arange(len(prefix),
                device=device)[None], use_cache=True, **{cache_arg: DynamicCache()}, **keep1)
    counter.forward_calls += 1
    counter.prompt_tokens += len(prefix)
    return _returned_cache(out, None)


def _score_batch(model, groups, prefix_len: int, prefix_cache, cache_arg: str, keep1: dict, pad_id: int,
                 counter: WorkCounter) -> list[list[dict]]:
    """One batch of questions: contexts (after the shared prefix, left padded) in one forward pass."""
    import copy

    from tunelab.evaluate.generation import _returned_cache
    from transformers import DynamicCache

    device = next(model.parameters()).device
    suffixes = [ctx[prefix_len:] for ctx, _ in groups]
    ids, mask, positions = left_pad(suffixes, pad_id, start=prefix_len)
    mask = torch.cat([torch.ones((len(groups), prefix_len), dtype=torch.long), mask], dim=1)
    owner = [r for r, (_, opts) in enumerate(groups) for _ in opts]
    options = [o for _, opts in groups for o in opts]
    longer = [k for k, o in enumerate(options) if len(o) > 1]
    if prefix_cache is not None:  # the model appends to the cache it is given: a copy per batch
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(groups))
        cache_kw = {"use_cache": True, cache_arg: cache}
    else:
        cache_kw = {"use_cache": True, cache_arg: DynamicCache()} if longer else {"use_cache": False}
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                **cache_kw, **keep1)
    counter.forward_calls += 1
    counter.prompt_tokens += int(sum(len(x) for x in suffixes))
    first_lp = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # predicts each option's first token
    rest = {}  # option k -> logits predicting its tokens 1.. (from its own positions 0..)
    if longer:
        logits = _continued_logits(model, _returned_cache(out, None), cache_arg, [owner[k] for k in longer],
                                   [options[k] for k in longer], mask, positions, pad_id, counter)
        rest = {k: logits[j] for j, k in enumerate(longer)}
    found, k = [], 0
    for r, (_, opts) in enumerate(groups):
        group_out = []
        for o in opts:
            targets = torch.tensor(o, device=first_lp.device)
            # token 0 from the context's last logits, token t from the option's logits at t - 1
            # an option's float32 log-softmax on its own: all options' at once (16 answers of 500
            # tokens, a 49k vocabulary) held ~3 GB
            rows = torch.cat([first_lp[r: r + 1], torch.log_softmax(rest[k][: len(o) - 1].float(), dim=-1)], dim=0) \
                if k in rest else first_lp[r: r + 1]
            token_lp = rows.gather(-1, targets[:, None])[:, 0]
            group_out.append({"logprob": float(token_lp.sum()), "n_tokens": len(o),
                              "is_greedy": bool((rows.argmax(-1) == targets).all())})
            k += 1
        found.append(group_out)
    return found


def _continued_logits(model, cache, cache_arg: str, owner: list[int], options: list[list[int]], mask, positions,
                      pad_id: int, counter: WorkCounter) -> torch.Tensor:
    """Logits (the model's dtype) over each option's own positions, continuing its owner row's
    context cache."""
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
                   position_ids=opt_pos.to(device), use_cache=True, **{cache_arg: cache}).logits
    counter.forward_calls += 1
    counter.prompt_tokens += int(opt_mask.sum())
    return logits
