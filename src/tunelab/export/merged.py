"""A merged export: the adapter folded into the base weights, saved as a plain model folder.

The folder (config, safetensors weights, tokenizer) loads with `AutoModelForCausalLM.from_pretrained`
without peft or tunelab. The merge is tunelab.models.tuners' one merge, in float32 (what training
used), so it is exact; `--dtype` casts the merged weights to bfloat16/float16 afterwards. Whether a
method may be exported merged is the method's own declaration (`Method.export_refusal`).
"""

from __future__ import annotations

from pathlib import Path

from tunelab.config.base import ConfigError

# --dtype names -> torch dtype names; float32 keeps the weights exactly as trained.
DTYPES = {"float32": "float32", "fp32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


def merged_model(model, method: str):
    """The model with its adapter folded into the base weights (a full model as it is)."""
    from tunelab.models.tuners import get_method, merge_into_base

    refusal = get_method(method).export_refusal()
    if refusal:
        raise ConfigError(refusal)
    return merge_into_base(model, method)


def write_model(model, tokenizer, out: Path, dtype: str = "float32") -> None:
    """A whole model (merged, or a full / freeze run's) as safetensors in `dtype`, with its tokenizer."""
    if dtype != "float32":
        import torch

        model = model.to(getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
