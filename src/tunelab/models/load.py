"""Load a pre-trained model and its tokenizer: causal LMs and encoder-decoders (T5 family).

`load_model("smollm2-135m-instruct")`, `load_model(cfg.model)`, or with `adapter=` a PEFT adapter
folder (or a tunelab run folder, whose `final/` is used) applied on top.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

from tunelab.config.base import ConfigError
from tunelab.config.model import ModelConfig
from tunelab.models.resolver import check_weight_files, resolve_model

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


@contextmanager
def loading_errors(path: str, model_cfg: ModelConfig, what: str = "model"):
    """Turn what transformers, peft and torch raise for a model a user can fix into one-line
    ConfigErrors: remote code, pickles that are not plain tensors, missing weights."""
    import pickle

    try:
        yield
    except pickle.UnpicklingError as exc:
        raise ConfigError(_pickle_refusal(path, what, str(exc))) from None
    except ValueError as exc:
        if "trust_remote_code" not in str(exc) or isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"{path}: the {what} needs its own Python code (auto_map in its config), which tunelab runs only "
            f"if you set model.trust_remote_code: true for a {what} you trust") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        message = " ".join(str(exc).split())
        if not model_cfg.allow_pickle and "safetensors" in message:
            raise ConfigError(
                f"{path}: no safetensors weights for this {what}; pickle weights can run code when loaded, so "
                f"tunelab reads them only if you set model.allow_pickle: true for a {what} you trust") from None
        raise ConfigError(f"{path}: cannot load the {what}: {message}") from None


def _pickle_refusal(path: str, what: str, torch_message: str) -> str:
    # torch's message ends by suggesting weights_only=False, the one thing never to do here.
    blocked = re.search(r"GLOBAL ([\w.]+)", torch_message)
    if blocked:
        return (f"{path}: refused the {what}'s pickle weights: they call {blocked.group(1)}, not just tensors "
                f"(torch.load with weights_only=True stopped it; nothing was run); use safetensors weights "
                f"from a source you trust")
    first = next((line.strip() for line in torch_message.splitlines() if line.strip()), "unreadable")
    return f"{path}: cannot read the {what}'s pickle weights: {first}"


def detect_architecture(path: str, model_cfg: ModelConfig) -> str:
    """'causal' or 'seq2seq', from the config unless the user said which."""
    if model_cfg.architecture != "auto":
        return model_cfg.architecture
    from transformers import AutoConfig

    with loading_errors(path, model_cfg):
        config = AutoConfig.from_pretrained(path, revision=model_cfg.revision,
                                            trust_remote_code=model_cfg.trust_remote_code)
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def load_tokenizer(path: str, model_cfg: ModelConfig):
    from transformers import AutoTokenizer

    with loading_errors(path, model_cfg, "tokenizer"):
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
    # Both folders are checked before either is read: a refused adapter costs no model load.
    check_weight_files(path, model_cfg.allow_pickle, "model")
    adapter_path = resolve_adapter(adapter) if adapter is not None else None
    if adapter_path is not None:
        check_weight_files(adapter_path, model_cfg.allow_pickle, "adapter")
    architecture = detect_architecture(path, model_cfg)
    auto_class = AutoModelForSeq2SeqLM if architecture == "seq2seq" else AutoModelForCausalLM
    kwargs = {
        "revision": model_cfg.revision,
        "trust_remote_code": model_cfg.trust_remote_code,
        "dtype": torch_dtype(dtype if dtype is not None else model_cfg.dtype),
        # safetensors only, unless opted in; then safetensors still win and a pickle is read with
        # torch.load(weights_only=True), which loads tensors and refuses any other object.
        "use_safetensors": None if model_cfg.allow_pickle else True,
        "weights_only": True,
    }
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": 0}
    with loading_errors(path, model_cfg):
        model = auto_class.from_pretrained(path, **kwargs)
    tokenizer = load_tokenizer(path, model_cfg)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if adapter_path is not None:
        from peft import PeftModel

        # peft reads adapter_model.bin with torch.load(weights_only=True) (peft.utils.torch_load)
        with loading_errors(adapter_path, model_cfg, "adapter"):
            model = PeftModel.from_pretrained(model, adapter_path)
    if device is not None and quantization_config is None:
        model.to(device)
    model.eval()
    return model, tokenizer
