"""Load a pre-trained model and its tokenizer: causal LMs and encoder-decoders (T5 family).

`load_model("smollm2-135m-instruct")`, `load_model(cfg.model)`, or with `adapter=` a PEFT adapter
folder (or a tunelab run folder, whose `final/` is used) applied on top.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.config.base import ConfigError
from tunelab.config.model import ModelConfig
from tunelab.models.resolver import resolve_model

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "auto": "auto"}


def torch_dtype(name):
    import torch

    if name is None or name == "auto":
        return "auto"
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ConfigError(f"model.dtype: unknown dtype '{name}' (choose from {', '.join(sorted(DTYPES))})")
    return getattr(torch, DTYPES[name])


def detect_architecture(path: str, model_cfg: ModelConfig) -> str:
    """'causal' or 'seq2seq', from the config unless the user said which."""
    if model_cfg.architecture != "auto":
        return model_cfg.architecture
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, revision=model_cfg.revision,
                                        trust_remote_code=model_cfg.trust_remote_code)
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def load_tokenizer(path: str, model_cfg: ModelConfig):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=model_cfg.revision,
                                              trust_remote_code=model_cfg.trust_remote_code)
    if tokenizer.pad_token_id is None:
        # Padding is always masked out of attention and loss, so EOS is a safe stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve_adapter(adapter: str) -> str:
    path = Path(adapter)
    if (path / "final" / "adapter_config.json").exists():
        return str(path / "final")
    if not (path / "adapter_config.json").exists():
        raise ConfigError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json) nor a run folder")
    return str(path)


def load_model(model_cfg_or_name: ModelConfig | str = "smollm2-135m-instruct", adapter: str | None = None,
               dtype=None, device: str | None = None, quantization_config=None):
    """Return (model, tokenizer). `dtype` overrides model.dtype; the model is in eval mode."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    model_cfg = (model_cfg_or_name if isinstance(model_cfg_or_name, ModelConfig)
                 else ModelConfig(name=str(model_cfg_or_name)))
    path = resolve_model(model_cfg.name)
    architecture = detect_architecture(path, model_cfg)
    auto_class = AutoModelForSeq2SeqLM if architecture == "seq2seq" else AutoModelForCausalLM
    kwargs = {
        "revision": model_cfg.revision,
        "trust_remote_code": model_cfg.trust_remote_code,
        "dtype": torch_dtype(dtype if dtype is not None else model_cfg.dtype),
    }
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": 0}
    model = auto_class.from_pretrained(path, **kwargs)
    tokenizer = load_tokenizer(path, model_cfg)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, resolve_adapter(adapter))
    if device is not None and quantization_config is None:
        model.to(device)
    model.eval()
    return model, tokenizer
