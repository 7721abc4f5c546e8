"""Batched text generation: length-sorted batches, left padding, KV cache, stop sequences.

The contract is that batching never changes an output: row i of a batch sees exactly the
tokens, positions and mask it would see alone. Two details make that hold:
- position ids come from the attention mask (the first real token is position 0), not from the
  padded column index; Llama in transformers 5 does not derive them itself;
- sampling draws each row from its own generator seeded by (seed, row key), so the random
  stream of a row does not depend on which rows share its batch.
Finished rows leave the batch (their KV cache rows are dropped), so a long answer does not
make the short ones pay for its decoding steps.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from tunelab.evaluate.padding import left_pad, pad_token_id
from tunelab.evaluate.shard import ONE, World, mine
from tunelab.signals import check as check_stop


@dataclass
class GenerationOutput:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    stop_reason: str  # "eos" | "stop" | "length"
    prompt_truncated: bool = False


@dataclass
class WorkCounter:
    """Work done by the model: what the cache test and the benchmark compare."""

    forward_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    model_loads: int = 0
    extra: dict = field(default_factory=dict)


def eos_token_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def _row_generator(seed: int, key: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def _pick_tokens(logits: torch.Tensor, settings, generators: list[torch.Generator] | None) -> torch.Tensor:
    """Greedy argmax, or one sample per row from its own generator (temperature, top-k, top-p)."""
    if not settings.do_sample:
        return logits.argmax(dim=-1)
    logits = logits.float() / max(settings.temperature, 1e-6)
    if settings.top_k and settings.top_k > 0:
        kth = torch.topk(logits, min(settings.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if settings.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        remove = cum - torch.softmax(sorted_logits, dim=-1) > settings.top_p
        sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.stack([torch.multinomial(probs[i], 1, generator=generators[i])[0] for i in range(len(probs))])


def _cache_kwarg(model) -> str:
    """transformers 5.x renames `past_key_values` to `cache`; older versions only know the former."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(inner.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _accepts(model, name: str) -> bool:
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(inner.forward).parameters


def _returned_cache(out, fallback):
    for name in ("cache", "past_key_values"):
        value = getattr(out, name, None)
        if value is not None:
            return value
    return fallback


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _keep_prompt_ends(prompts: list[list[int]], max_prompt_tokens: int | None) -> list[bool]:
    """Cut each over-long prompt (in place) to its last max_prompt_tokens; which ones were cut.
    The end is kept: the question and the generation prompt live there."""
    truncated = [False] * len(prompts)
    if max_prompt_tokens:
        for i, p in enumerate(prompts):
            if len(p) > max_prompt_tokens:
                prompts[i], truncated[i] = p[-max_prompt_tokens:], True
    return truncated


def _prefill(model, input_ids, mask, positions, cache_arg: str, counter: WorkCounter):
    """The prompts' forward pass: (last column's logits, KV cache)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    # Only the last column's logits are needed: skip the LM head over the prompt (a 49k-vocab head
    # over every prompt token costs about as much as the layers on a 135M model).
    keep = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                **{cache_arg: cache}, **keep)
    counter.forward_calls += 1
    counter.prompt_tokens += int(mask.sum())
    return out.logits[:, -1, :], _returned_cache(out, cache)


def _take_token(tok: int, row: int, new_tokens: list[list[int]], eos: set[int], stops: list[str], settings,
                tokenizer, counter: WorkCounter, on_token) -> str | None:
    """Add a row's picked token to its new tokens; the stop reason when that ends the row, else None."""
    if tok in eos:
        return "eos"
    tokens = new_tokens[row]
    tokens.append(tok)
    counter.generated_tokens += 1
    if on_token is not None:
        on_token(row, tokens)
    if stops and _cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), stops)[1]:
        return "stop"
    return "length" if len(tokens) >= settings.max_new_tokens else None


def _output(tokenizer, tokens: list[int], prompt_tokens: int, reason: str, truncated: bool,
            stops: list[str]) -> GenerationOutput:
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    text = _cut_at_stop(text, stops)[0] if stops else text
    return GenerationOutput(text, tokens, prompt_tokens, reason, truncated)


@torch.inference_mode()
def generate_batch(model, tokenizer, prompts: list[list[int]], settings, keys: list[str] | None = None,
                   counter: WorkCounter | None = None, max_prompt_tokens: int | None = None,
                   on_token=None, extra_eos: set[int] | None = None) -> list[GenerationOutput]:
    """Generate for one batch of token-id prompts (left padded here). Returns outputs in input order.
    on_token(row, tokens so far), when given, is called after each new token of a row (streaming)."""
    from tunelab.evaluate.views import as_causal_lm

    model = as_causal_lm(model)  # encoder-decoders and prompt/prefix tuning: views.py
    counter = counter or WorkCounter()
    device = next(model.parameters()).device
    truncated = _keep_prompt_ends(prompts, max_prompt_tokens)
    if any(len(p) == 0 for p in prompts):
        raise ValueError("empty prompt")
    input_ids, mask, positions = (t.to(device) for t in left_pad(prompts, pad_token_id(tokenizer)))
    # A chosen chat template may end answers with its own token (Gemma's <end_of_turn> on a base model).
    eos = eos_token_ids(model, tokenizer) | set(extra_eos or ())
    keys = keys or [str(i) for i in range(len(prompts))]
    generators = [_row_generator(settings.seed, k) for k in keys] if settings.do_sample else None
    cache_arg = _cache_kwarg(model)
    logits, cache = _prefill(model, input_ids, mask, positions, cache_arg, counter)
    next_pos = positions[:, -1:] + 1

    active = list(range(len(prompts)))  # original row index of each live batch row
    new_tokens: list[list[int]] = [[] for _ in prompts]
    results: list[GenerationOutput | None] = [None] * len(prompts)
    stops = list(settings.stop or [])
    for _ in range(settings.max_new_tokens):
        picked = _pick_tokens(logits, settings, [generators[r] for r in active] if generators else None).tolist()
        keep = []
        for b, row in enumerate(active):
            reason = _take_token(int(picked[b]), row, new_tokens, eos, stops, settings, tokenizer, counter, on_token)
            if reason is None:
                keep.append(b)
            else:
                results[row] = _output(tokenizer, new_tokens[row], len(prompts[row]), reason, truncated[row], stops)
        if not keep:
            break
        if len(keep) < len(active):  # finished rows leave the batch, their KV cache rows too
            index = torch.tensor(keep, dtype=torch.long, device=device)
            cache.batch_select_indices(index)
            mask = mask.index_select(0, index)
            next_pos = next_pos.index_select(0, index)
            active = [active[b] for b in keep]
        step_ids = torch.tensor([[new_tokens[row][-1]] for row in active], dtype=torch.long, device=device)
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=next_pos, use_cache=True, **{cache_arg: cache})
        counter.forward_calls += 1
        logits = out.logits[:, -1, :]
        cache = _returned_cache(out, cache)
        next_pos = next_pos + 1
    for row in range(len(prompts)):
        if results[row] is None:  # only reachable when max_new_tokens ran out inside the loop
            results[row] = _output(tokenizer, new_tokens[row], len(prompts[row]), "length", truncated[row], [])
    return results  # type: ignore[return-value]


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (memory peaks early)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def generate(model, tokenizer, prompts: list[list[int]], settings, batch_size: int = 8, keys: list[str] | None = None,
             counter: WorkCounter | None = None, max_prompt_tokens: int | None = None, progress=None,
             on_batch=None, extra_eos: set[int] | None = None, world: World = ONE) -> list[GenerationOutput]:
    """Generate for all prompts in length-sorted batches; outputs come back in input order.

    on_batch(indices, outputs), when given, is called as each batch finishes (the evaluation cache
    writes them at once, so an interrupted evaluation keeps its finished batches). Several
    processes (world, shard.py): only this process's batches are run; the others' outputs are None."""
    keys = keys or [str(i) for i in range(len(prompts))]
    results: list[GenerationOutput | None] = [None] * len(prompts)
    for batch in mine(length_sorted_batches([len(p) for p in prompts], max(1, batch_size)), world, progress):
        check_stop()  # a signal held back by training (validation) stops between batches
        outs = generate_batch(model, tokenizer, [list(prompts[i]) for i in batch], settings, [keys[i] for i in batch],
                              counter, max_prompt_tokens, extra_eos=extra_eos)
        for i, o in zip(batch, outs):
            results[i] = o
        if on_batch is not None:
            on_batch(batch, outs)
        if progress is not None:
            progress(len(batch))
    return results  # type: ignore[return-value]
