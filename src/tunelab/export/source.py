"""The model an export starts from: a run's final/ folder or one of its checkpoints, on the fp32 base.

Export reads a finished (or stopped) run back as it was trained: the resolved config, the
method attached as in training (tunelab.models.tuners), the checkpoint's trained tensors copied in,
and the tokenizer the run saved (it carries the chat template the run trained with).
"""

from __future__ import annotations

from pathlib import Path

from tunelab.config.base import ConfigError
from tunelab.runfolder import RunFolder


def checkpoint_path(run: Path, checkpoint: str) -> Path:
    from tunelab.train.checkpoint import latest_checkpoint

    folder = run / "checkpoints"
    if checkpoint == "last":
        path = latest_checkpoint(folder)
    elif checkpoint == "best":
        summary = RunFolder.of(run).summary()
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
    if not RunFolder.of(run).has_config():
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
