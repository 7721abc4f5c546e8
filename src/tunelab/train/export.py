"""Export a run: the adapter in PEFT format, or the adapter merged into the base weights.

A merged export is a plain safetensors model folder (config, weights, tokenizer) that
`AutoModelForCausalLM.from_pretrained` loads without peft or tunelab.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.base import ConfigError

UNMERGEABLE = ("prompt_tuning", "prefix_tuning")


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


def export_run(run: str | Path, merge: bool = False, checkpoint: str = "final", output: str | None = None) -> Path:
    run = Path(run)
    model, tokenizer, cfg = load_run_model(run, checkpoint)
    method = cfg.train.method
    is_peft = hasattr(model, "peft_config")
    out = Path(output) if output else run / ("export-merged" if merge else "export-adapter")
    if merge:
        if method in UNMERGEABLE:
            raise ConfigError(f"a {method} adapter adds virtual tokens and cannot be merged into the weights; "
                              "export it without --merge (PEFT format)")
        if method == "qlora":
            raise ConfigError("merging into a quantised base model loses precision; train with method: lora "
                              "to export a merged model, or export the adapter without --merge")
        if is_peft:
            model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
