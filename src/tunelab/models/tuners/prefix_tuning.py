"""Prefix tuning (Li & Liang 2021) through peft: trained key/value prefixes in every layer.

peft sizes the prefixes from config names (num_key_value_heads, hidden_size / heads) that not every
family uses: Falcon's multi-query attention keeps one key/value head, which peft cannot see. The
sizes are read instead from the key/value cache of a one-token forward of the model itself.
"""

from __future__ import annotations

from tunelab.models.tuners.base import VIRTUAL_TOKENS, Method, peft_refusals, peft_task_type


def kv_shape(model) -> tuple[int, int] | None:
    """(key/value heads, head size) of the first attention layer, from a one-token forward's cache."""
    import torch

    ids = torch.tensor([[0]], device=next(model.parameters()).device)
    extra = {"decoder_input_ids": ids} if getattr(model.config, "is_encoder_decoder", False) else {}
    try:
        with torch.no_grad():
            out = model(input_ids=ids, use_cache=True, **extra)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        cache = getattr(cache, "self_attention_cache", cache)  # encoder-decoders: the decoder's own
        keys = cache.layers[0].keys
    except (TypeError, ValueError, RuntimeError, AttributeError, IndexError):
        return None  # no cache to read: peft's sizes from the config
    return (int(keys.shape[1]), int(keys.shape[3])) if keys is not None and keys.dim() == 4 else None


def apply(model, train_cfg, architecture, model_path):
    from peft import PrefixTuningConfig, get_peft_model

    opts = train_cfg.prefix_tuning
    shape = kv_shape(model)
    sizes = {"num_attention_heads": shape[0], "token_dim": shape[0] * shape[1]} if shape else {}
    config = PrefixTuningConfig(task_type=peft_task_type(architecture), num_virtual_tokens=opts.num_virtual_tokens,
                                prefix_projection=opts.prefix_projection, **sizes)
    with peft_refusals("prefix_tuning", model):
        return get_peft_model(model, config)


METHOD = Method("prefix_tuning", apply, options=("prefix_tuning",), peft=True, peft_type="PREFIX_TUNING",
                peft_forward=True, half_frozen_weights=True,
                unmergeable=VIRTUAL_TOKENS,
                regularization="prefixes have no starting weights to stay near")
