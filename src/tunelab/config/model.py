"""`model:` section: which pre-trained model to start from."""

from __future__ import annotations

from typing import Literal

from tunelab.config.base import StrictModel


class ModelConfig(StrictModel):
    # A built-in alias (see `tunelab models`), a Hugging Face hub id, or a local folder.
    name: str = "smollm2-135m-instruct"
    revision: str | None = None
    # Off by default: remote code is arbitrary Python from the hub.
    trust_remote_code: bool = False
    # Off by default: weights are read from safetensors only. A pickle (pytorch_model.bin,
    # adapter_model.bin) can run arbitrary code when loaded; true accepts a model or adapter
    # folder with pickle weights only, read with torch.load(weights_only=True), which refuses
    # anything but tensors. Safer still: convert the weights to safetensors once.
    allow_pickle: bool = False
    # Weights dtype when loading; training precision is train.precision.
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    # causal LM or encoder-decoder (T5 family); "auto" reads the model's config.
    architecture: Literal["auto", "causal", "seq2seq"] = "auto"
    # Attention kernel passed to from_pretrained ("sdpa", "eager", "flash_attention_2", ...);
    # None lets transformers choose.
    attn_implementation: str | None = None
