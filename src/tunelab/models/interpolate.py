"""Weight-space interpolation between a base model and its fine-tuned version (WiSE-FT).

theta(alpha) = (1 - alpha) * theta_base + alpha * theta_tuned, parameter by parameter, matched by
name (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models", arXiv:2109.01903; Lin et
al. 2024, "Mitigating the alignment tax of RLHF", arXiv:2309.06256, on the trade-off between what
fine-tuning gains and what it forgets). For LoRA, DoRA and IA3 the tuned weights are the merged
ones (merge_and_unload), so the interpolation is exact for every method whose adapter merges;
prompt and prefix tuning add virtual tokens, which have no counterpart in the base weights.

Used by the evaluation loader (ModelSpec.alpha) and by `tunelab export --alpha`.
"""

from __future__ import annotations

from tunelab.config.base import UserError


def check_alpha(alpha: float | None) -> float | None:
    """alpha as a float in [0, 1], or None (the model as trained). Values outside are refused:
    extrapolating past the tuned weights (or behind the base) is a different method, not the
    base-to-tuned path this sweep measures."""
    if alpha is None:
        return None
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise UserError(f"alpha {alpha!r}: give a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise UserError(f"alpha {value:g} is outside [0, 1]: 0 is the base model, 1 the tuned one "
                        "(interpolation only; extrapolation is not supported)")
    return value


def interpolate_(model, base_state: dict, alpha: float):
    """Set every floating-point parameter and buffer of `model` (the tuned, merged model) to
    (1 - alpha) * base + alpha * tuned, in place; return the model.

    base_state: name -> tensor of the base model (a state_dict; any device). Tensors that share
    storage (tied input and output embeddings) are changed once, so they stay tied. alpha = 0
    gives the base weights bit for bit and alpha = 1 leaves the tuned ones untouched; in between,
    torch.lerp (base + alpha * (tuned - base), the same line) in float32 whatever the model's dtype."""
    import torch

    alpha = check_alpha(alpha)
    if alpha == 1.0:
        return model
    saved = set(model.state_dict())  # non-persistent buffers (rotary frequencies) are computed, not weights
    tensors = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if n in saved]
    missing = [name for name, t in tensors if t.is_floating_point() and name not in base_state]
    if missing:
        raise UserError(f"cannot interpolate: the base model has no weight '{missing[0]}' "
                        f"({len(missing)} missing); is it the model this run was tuned from?")
    seen = set()
    with torch.no_grad():
        for name, tensor in tensors:
            if not tensor.is_floating_point() or tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            base = base_state[name]
            if base.shape != tensor.shape:
                raise UserError(f"cannot interpolate '{name}': base shape {tuple(base.shape)}, tuned "
                                f"{tuple(tensor.shape)} (a resized vocabulary or another model)")
            base = base.to(device=tensor.device, dtype=torch.float32)
            mixed = base if alpha == 0.0 else torch.lerp(base, tensor.float(), alpha)
            tensor.copy_(mixed.to(tensor.dtype))
    return model


def load_base_state(model_cfg, dtype: str = "float32") -> dict:
    """The base model's weights (name -> tensor, on the CPU) loaded as tunelab loads any model."""
    from tunelab.models.load import load_model

    base, _ = load_model(model_cfg.model_copy(update={"dtype": dtype}))
    return base.state_dict()
