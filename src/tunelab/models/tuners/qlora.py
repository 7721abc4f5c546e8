"""QLoRA (Dettmers et al. 2023): LoRA on a 4- or 8-bit quantised base model (bitsandbytes, CUDA only).

The quantisation happens at load time (`quantization_config`), the adapter in `apply`.
LoRA options come from `train.lora`, quantisation options from `train.qlora`.
"""

from __future__ import annotations

import importlib.util

from tunelab.config.base import ConfigError
from tunelab.models.tuners.base import Method


def check_available() -> None:
    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (none is visible to torch)")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package (pip install 'tunelab[gpu]')")
    if missing:
        raise ConfigError("train.method=qlora needs " + " and ".join(missing)
                          + "; use method: lora to train the same adapter without quantisation")


def quantization_config(train_cfg):
    import torch
    from transformers import BitsAndBytesConfig

    check_available()
    opts = train_cfg.qlora
    if opts.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.float16 if train_cfg.precision == "fp16" else torch.bfloat16  # auto on CUDA: bf16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=opts.quant_type,
                              bnb_4bit_use_double_quant=opts.double_quant, bnb_4bit_compute_dtype=compute)


def apply(model, train_cfg, architecture, model_path):
    from peft import get_peft_model, prepare_model_for_kbit_training

    from tunelab.models.tuners.lora import lora_config

    check_available()
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train_cfg.gradient_checkpointing)
    return get_peft_model(model, lora_config(train_cfg.lora, architecture))


# The base is quantised at load time (`quantization`), so it is never stored in the autocast dtype.
METHOD = Method("qlora", apply, options=("lora", "qlora"), peft=True, peft_type="LORA",
                quantization=quantization_config,
                merged_export="merging into a quantised base model loses precision; train with method: lora "
                              "to export a merged model or a GGUF, or export the adapter without --merge")
