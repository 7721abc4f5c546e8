"""Probes that decide, for the model at hand, whether a training shortcut is exact.

Two shortcuts depend on how a model family computes its logits and its attention:
- the fast loss path (loss.py) runs the model body and applies the LM head itself, so anything a
  family does between the two (Gemma-2's logit soft-capping, Cohere's logit_scale, Granite's
  logits_scaling, ...) would be skipped silently;
- packing relies on the model reading restarts in `position_ids` as sequence boundaries;
- a preference pair in one row (prompt, chosen, rejected) relies on the model taking a custom 4D
  attention mask and position ids as given.
A list of families that need special care goes stale with every new architecture; instead, each
shortcut is checked once, on a few tokens, against the model's own forward, and used only when it
agrees. The probes run in eval mode (no dropout) without gradients and restore every module's mode.
"""

from __future__ import annotations

import contextlib

import torch

from tunelab.config.base import ConfigError

PROBE_LENGTHS = (7, 5)  # two examples packed into one row for the packing probe
# Probe failures that mean "this model's forward does not fit the shortcut": use the model's own.
PROBE_ERRORS = (TypeError, ValueError, RuntimeError, AttributeError, NotImplementedError)


def base_lm(model):
    """The transformers model under a peft wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def model_type(model) -> str:
    return getattr(base_lm(model).config, "model_type", type(base_lm(model)).__name__)


@contextlib.contextmanager
def probing(model):
    """Eval mode, no gradients, and autocast to the weights' dtype when the frozen base is stored in
    bf16/fp16 (trainable adapters are fp32: without autocast their matmuls would mix dtypes)."""
    modes = [(m, m.training) for m in model.modules()]
    half = half_dtype(model)
    device = next(model.parameters()).device
    cast = torch.autocast(device.type, dtype=half) if half is not None else contextlib.nullcontext()
    model.eval()
    try:
        with torch.no_grad(), cast:
            yield device
    finally:
        for module, training in modes:
            module.training = training


def half_dtype(model):
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return next((d for d in (torch.bfloat16, torch.float16) if d in dtypes), None)


def tolerance(model, fp32: float) -> float:
    """Relative tolerance of a probe: float32 rounding, or that of bf16/fp16 under autocast."""
    return fp32 if half_dtype(model) is None else 2e-2


def probe_ids(model, lengths, device) -> list[torch.Tensor]:
    """Fixed, spread-out token ids (no randomness: a probe must not move the training RNG)."""
    vocab = base_lm(model).get_input_embeddings().num_embeddings
    start, out = 0, []
    for n in lengths:
        out.append(((torch.arange(start, start + n) * 7919 + 101) % vocab).to(device)[None])
        start += n
    return out


def fast_path_is_exact(model) -> bool:
    """True when head(body(ids)) is the model's own logits: the head's input equals the body's
    output, and the head's output is returned unchanged (bit for bit, dtype aside)."""
    lm = base_lm(model)
    head, body = lm.get_output_embeddings(), getattr(lm, lm.base_model_prefix, None)
    if head is None or body is None:
        return False
    seen = {}
    hook = head.register_forward_hook(lambda module, args, out: seen.update(x=args[0] if args else None, y=out))
    try:
        with probing(model) as device:
            (ids,) = probe_ids(model, (12,), device)
            logits = model(input_ids=ids, use_cache=False).logits  # the hook records the head's input and output
            hidden = body(input_ids=ids, use_cache=False).last_hidden_state
    except PROBE_ERRORS:
        return False
    finally:
        hook.remove()
    x, y = seen.get("x"), seen.get("y")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or y.shape != logits.shape \
            or x.shape != hidden.shape:
        return False
    tol = tolerance(model, 1e-5)
    return torch.equal(y.float(), logits.float()) and torch.allclose(x.float(), hidden.float(), rtol=tol, atol=tol)


def packing_is_exact(model) -> bool:
    """True when two examples packed into one row (position ids restarting at 0, no attention mask:
    what train.packing feeds the model) get the logits each gets alone."""
    try:
        with probing(model) as device:
            alone = probe_ids(model, PROBE_LENGTHS, device)
            row = torch.cat(alone, dim=1)
            positions = torch.cat([torch.arange(n) for n in PROBE_LENGTHS]).to(device)[None]
            packed = model(input_ids=row, position_ids=positions, use_cache=False).logits.float()
            single = torch.cat([model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
                                .logits.float() for ids in alone], dim=1)
    except PROBE_ERRORS:
        return False
    if packed.shape != single.shape:
        return False
    tol = tolerance(model, 1e-4)
    scale = float(single.abs().max()) or 1.0
    return float((packed - single).abs().max()) <= tol * scale


def check_packing(model) -> None:
    """Refuse train.packing for a model that attends across packed examples (or cannot take them)."""
    if getattr(base_lm(model).config, "is_encoder_decoder", False):
        raise ConfigError(f"train.packing: {model_type(model)} is an encoder-decoder model; packing is for "
                          "decoder-only models (set train.packing: false)")
    if not packing_is_exact(model):
        raise ConfigError(
            f"train.packing: {model_type(model)} models do not keep packed examples apart (the packing probe "
            f"gave different logits for an example packed with another than alone); set train.packing: false")


def shared_prompt_is_exact(model, longest_row: int | None) -> bool:
    """True when a pair in one row (train/preference.py `shared_prompt_inputs`: the rejected answer
    masked from the chosen one, its positions continuing the prompt's) gets, at every position of
    each answer's sequence, the logits that sequence gets alone. A 4D mask replaces the model's
    own for every layer, so a sliding window or attention chunk shorter than the longest row
    (unknown: None) refuses it before any probe."""
    from tunelab.evaluate.loglikelihood import sliding_window
    from tunelab.train.preference import shared_mask_kind, shared_prompt_inputs

    lm = base_lm(model)
    window, kind = sliding_window(model), shared_mask_kind(model)
    if getattr(lm.config, "is_encoder_decoder", False) or kind is None \
            or (window is not None and (longest_row is None or window < longest_row)):
        return False
    lengths = (6, 4, 3)  # prompt, chosen, rejected
    try:
        with probing(model) as device:
            prompt, chosen, rejected = probe_ids(model, lengths, device)
            row = torch.cat([prompt, chosen, rejected], dim=1)
            positions, mask, *_ = shared_prompt_inputs(torch.tensor([lengths], device=device), row.shape[1],
                                                       kind, lm.get_input_embeddings().weight.dtype)
            shared = model(input_ids=row, attention_mask=mask, position_ids=positions, use_cache=False).logits.float()
            alone = [model(input_ids=torch.cat([prompt, answer], dim=1), use_cache=False).logits.float()
                     for answer in (chosen, rejected)]
    except PROBE_ERRORS:
        return False
    expected = torch.cat([alone[0], alone[1][:, lengths[0]:]], dim=1)  # prompt, chosen answer, rejected answer
    if shared.shape != expected.shape:
        return False
    tol = tolerance(model, 1e-4)
    scale = float(expected.abs().max()) or 1.0
    return float((shared - expected).abs().max()) <= tol * scale
