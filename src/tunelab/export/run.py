"""Export a run: the adapter in PEFT format, the adapter merged into the base weights, or a GGUF file.

A merged export is a plain safetensors model folder (config, weights, tokenizer) that
`AutoModelForCausalLM.from_pretrained` loads without peft or tunelab, in float32 (the default,
what training used) or cast to bfloat16/float16 after merging, so the merge itself is exact.
A GGUF export (tunelab.train.gguf) is the same merged model converted by llama.cpp's own
converter. Every export folder gets a model card (README.md, tunelab.train.model_card).
With `alpha`, the merged weights are first interpolated with the base model's (WiSE-FT,
tunelab.models.interpolate): (1 - alpha) * base + alpha * tuned, in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.base import ConfigError
from tunelab.files import write_text

UNMERGEABLE = ("prompt_tuning", "prefix_tuning")
# --dtype names -> torch dtype names; float32 keeps the weights exactly as trained.
DTYPES = {"float32": "float32", "fp32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


def checkpoint_path(run: Path, checkpoint: str) -> Path:
    from tunelab.train.checkpoint import latest_checkpoint

    folder = run / "checkpoints"
    if checkpoint == "last":
        path = latest_checkpoint(folder)
    elif checkpoint == "best":
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
        path = run / summary["best_checkpoint"] if summary.get("best_checkpoint") else None
    else:
        path = folder / checkpoint
    if path is None or not (path / "trainable.safetensors").exists():
        raise ConfigError(f"{run}: no checkpoint '{checkpoint}' (have: "
                          f"{', '.join(p.name for p in sorted(folder.glob('step-*'))) or 'none'})")
    return path


def load_run_model(run: str | Path, checkpoint: str = "final"):
    """(model, tokenizer, cfg) of a run: its final/ folder or any checkpoint, on the fp32 base model."""
    import torch
    from safetensors.torch import load_file

    from tunelab.config import load_config
    from tunelab.config.model import ModelConfig
    from tunelab.models.load import load_model
    from tunelab.models.resolver import resolve_model
    from tunelab.models.tuners import apply_method

    run = Path(run)
    if not (run / "config.resolved.yaml").exists():
        raise ConfigError(f"{run}: not a run folder (no config.resolved.yaml)")
    cfg = load_config(run / "config.resolved.yaml")
    if checkpoint == "final":
        final = run / "final"
        if (final / "adapter_config.json").exists():
            model, tokenizer = load_model(cfg.model.model_copy(update={"dtype": "float32"}), adapter=str(final))
        elif (final / "config.json").exists():
            model, tokenizer = load_model(ModelConfig(name=str(final), dtype="float32"))
        else:
            raise ConfigError(f"{run}: the run has no final/ folder (did it finish?); "
                              "use --checkpoint last or best")
        return model, tokenizer, cfg
    path = checkpoint_path(run, checkpoint)
    model, tokenizer = load_model(cfg.model.model_copy(update={"dtype": "float32"}))
    architecture = "seq2seq" if model.config.is_encoder_decoder else "causal"
    model = apply_method(model, cfg.train, architecture, resolve_model(cfg.model.name))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in load_file(str(path / "trainable.safetensors")).items():
            params[name].copy_(value)
    model.eval()
    return model, tokenizer, cfg


def run_tokenizer(run: Path, cfg, tokenizer):
    """The tokenizer the run saved in final/ (it carries the chat template the run trained with,
    data.chat_template included); the base model's, with that template set, when there is none."""
    from tunelab.models.load import load_tokenizer

    if (run / "final" / "tokenizer_config.json").exists():
        return load_tokenizer(str(run / "final"), cfg.model)
    from tunelab.data.templates import use_chat_template

    use_chat_template(tokenizer, cfg.data.chat_template, cfg.config_dir)
    return tokenizer


def merged_model(model, method: str):
    """The model with its adapter folded into the base weights (a full model as it is)."""
    if method in UNMERGEABLE:
        raise ConfigError(f"a {method} adapter adds virtual tokens and cannot be merged into the weights; "
                          "export it without --merge or --gguf (PEFT format)")
    if method == "qlora":
        raise ConfigError("merging into a quantised base model loses precision; train with method: lora "
                          "to export a merged model or a GGUF, or export the adapter without --merge")
    return model.merge_and_unload() if hasattr(model, "peft_config") else model


def export_run(run: str | Path, merge: bool = False, checkpoint: str = "final", output: str | None = None,
               dtype: str | None = None, gguf: str | None = None, alpha: float | None = None) -> Path:
    """Write the export folder and its model card; return the folder.

    gguf: None, or "f16" | "bf16" | "q8_0" (implies merging); dtype: the merged or full model's
    safetensors dtype (float32 default; bf16 | fp16); alpha: interpolate the merged weights with
    the base's (0 = base, 1 = as trained; needs merge or gguf)."""
    from tunelab.models.interpolate import check_alpha
    from tunelab.train.gguf import GGUF_TYPES, converter
    from tunelab.train.model_card import write_model_card

    run = Path(run)
    alpha = check_alpha(alpha)
    if alpha is not None and not (merge or gguf):
        raise ConfigError("--alpha interpolates merged weights: add --merge (or --gguf)")
    if gguf is not None and gguf not in GGUF_TYPES:
        raise ConfigError(f"--gguf-type {gguf!r}: choose from {', '.join(GGUF_TYPES)}")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    if gguf is not None and dtype not in (None, "float32", "fp32"):
        raise ConfigError("--dtype is for safetensors exports; a GGUF's type is --gguf-type")
    if gguf is not None:
        converter()  # found or fetched before the model loads: a missing converter costs no load
    model, tokenizer, cfg = load_run_model(run, checkpoint)
    tokenizer = run_tokenizer(run, cfg, tokenizer)
    kind = "gguf" if gguf else "model" if merge or not hasattr(model, "peft_config") else "adapter"
    if kind == "adapter" and dtype not in (None, "float32", "fp32"):
        raise ConfigError("--dtype needs --merge: a PEFT adapter is saved as trained (float32)")
    default = "export-gguf" if kind == "gguf" else "export-merged" if merge else "export-adapter"
    default += "" if alpha is None else f"-alpha-{alpha:g}"  # beside the as-trained export, not over it
    out = Path(output) if output else run / default
    info = {"kind": kind, "checkpoint": checkpoint, "dtype": DTYPES[dtype or "float32"], "gguf_type": gguf}
    if kind != "adapter":
        model = merged_model(model, cfg.train.method)
    if alpha is not None:
        from tunelab.models.interpolate import interpolate_, load_base_state

        model = interpolate_(model, load_base_state(cfg.model, "float32"), alpha)
        info["alpha"] = alpha
    out.mkdir(parents=True, exist_ok=True)
    if kind == "gguf":
        info["gguf_file"] = write_gguf(model, tokenizer, out, cfg, gguf).name
    else:
        if kind == "model" and info["dtype"] != "float32":
            import torch

            model = model.to(getattr(torch, info["dtype"]))
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        if kind == "adapter":
            from tunelab.models.portable import record_base

            record_base(out, cfg.model)
    write_model_card(out, run, cfg, info)
    return out


def sentencepiece_model(model_cfg) -> Path | None:
    """The base model's SentencePiece `tokenizer.model`, when it has one. transformers 5 saves
    tokenizer.json only, but llama.cpp's converter reads SentencePiece vocabularies (Gemma, Gemma 2,
    Llama 2, Mistral v0.1) from that file, as it would in the original model folder."""
    from tunelab.models.resolver import resolve_model

    base = resolve_model(model_cfg.name)
    if Path(base).is_dir():
        path = Path(base) / "tokenizer.model"
        return path if path.is_file() else None
    try:  # a hub id: from the cache, or downloaded unless offline
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(base, "tokenizer.model", revision=model_cfg.revision))
    except Exception:  # noqa: BLE001 -- no such file in the repo, or offline: the converter says what it lacks
        return None


def write_gguf(model, tokenizer, out: Path, cfg, gguf_type: str) -> Path:
    """The merged float32 model, saved to a scratch folder inside `out`, converted by llama.cpp's
    converter to `<name>-<TYPE>.gguf`, plus an Ollama Modelfile; the scratch folder is removed."""
    import shutil

    from tunelab.train.gguf import convert_folder

    scratch = out / ".merged-float32"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        model.save_pretrained(scratch, safe_serialization=True)
        tokenizer.save_pretrained(scratch)
        spm = sentencepiece_model(cfg.model)
        if spm is not None and not (scratch / "tokenizer.model").exists():
            shutil.copyfile(spm, scratch / "tokenizer.model")
        path = convert_folder(scratch, out / f"{cfg.name}-{gguf_type.upper()}.gguf", gguf_type, name=cfg.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    write_text(out / "Modelfile", f"FROM ./{path.name}\n")
    return path
