"""Fine-tuning methods, one module each (PEFT's tuners/<method>/ layout).

Every module defines `apply(model, train_cfg, architecture, model_path) -> model`: it marks what
is trainable (and wraps the model with peft where the method comes from peft).
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

from tunelab.config.base import ConfigError

PEFT_METHODS = ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "qlora")


def apply_method(model, train_cfg, architecture: str, model_path: str):
    module = importlib.import_module(f"tunelab.models.tuners.{train_cfg.method}")
    return module.apply(model, train_cfg, architecture, model_path)


def peft_task_type(architecture: str):
    from peft import TaskType

    return TaskType.SEQ_2_SEQ_LM if architecture == "seq2seq" else TaskType.CAUSAL_LM


@contextmanager
def peft_refusals(method: str, model, hints: dict[str, str] | None = None):
    """peft's ValueError for a model it cannot adapt this way, as one ConfigError naming the model type;
    `hints` adds what to do for messages that contain a key."""
    try:
        yield
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        hint = "".join(h for key, h in (hints or {}).items() if key in str(exc))
        raise ConfigError(f"train.method={method}: peft cannot apply it to {model_type} models: {exc}{hint}") from None


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
