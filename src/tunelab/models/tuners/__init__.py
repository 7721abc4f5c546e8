"""Fine-tuning methods, one module each (PEFT's tuners/<method>/ layout).

Every module defines `apply(model, train_cfg, architecture, model_path) -> model`: it marks what
is trainable (and wraps the model with peft where the method comes from peft).
"""

from __future__ import annotations

import importlib

PEFT_METHODS = ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "qlora")


def apply_method(model, train_cfg, architecture: str, model_path: str):
    module = importlib.import_module(f"tunelab.models.tuners.{train_cfg.method}")
    return module.apply(model, train_cfg, architecture, model_path)


def peft_task_type(architecture: str):
    from peft import TaskType

    return TaskType.SEQ_2_SEQ_LM if architecture == "seq2seq" else TaskType.CAUSAL_LM


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
