"""Fine-tuning methods, one module each (PEFT's tuners/<method>/ layout), and their registry.

Every module defines `apply(model, train_cfg, architecture, model_path) -> model` (it marks what
is trainable, and wraps the model with peft where the method comes from peft) and one `METHOD`
(tuners/base.py): what the rest of tunelab needs to know about it: its train: sections, whether
it is a peft adapter, whether its forward goes through peft, whether and how it merges, what
export and regularisation make of it. `METHODS` is the registry; code elsewhere asks it (or the
functions below) instead of keeping lists of method names. `merge_into_base` is the one place an
adapter is folded into the base weights (export, evaluation, continual stages).

config/train.py keeps its own literal tuple of the names (config imports nothing from models);
a test checks that it equals this registry's.
"""

from __future__ import annotations

from tunelab.config.base import ConfigError
from tunelab.models.tuners import dora, freeze, full, ia3, lora, prefix_tuning, prompt_tuning, qlora
from tunelab.models.tuners.base import VIRTUAL_TOKENS, Method, peft_refusals, peft_task_type

__all__ = ["METHODS", "PEFT_METHODS", "Method", "adapter_method", "apply_method", "count_parameters",
           "get_method", "merge_into_base", "methods_reading", "peft_refusals", "peft_task_type"]

METHODS: dict[str, Method] = {m.METHOD.name: m.METHOD for m in (
    full, freeze, lora, dora, ia3, prompt_tuning, prefix_tuning, qlora)}
PEFT_METHODS = tuple(name for name, m in METHODS.items() if m.peft)


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"train.method={name!r}: choose from {', '.join(METHODS)}") from None


def apply_method(model, train_cfg, architecture: str, model_path: str):
    return get_method(train_cfg.method).attach(model, train_cfg, architecture, model_path)


def methods_reading(section: str) -> tuple[str, ...]:
    """The methods that read train.<section> (train.lora: lora, dora and qlora)."""
    return tuple(name for name, m in METHODS.items() if section in m.options)


def adapter_method(model) -> Method | None:
    """The method of the peft adapter a model carries (an adapter folder loaded on its own says
    only peft's type): None for a model without one, or an adapter type no method here trains."""
    config = (getattr(model, "peft_config", None) or {}).get("default")
    if config is None:
        return None
    peft_type = getattr(config.peft_type, "value", str(config.peft_type))
    return next((m for m in METHODS.values() if m.peft_type == peft_type), None)


def merge_into_base(model, method: str | None = None, keep_unmergeable: bool = False):
    """The model with its adapter folded into the base weights (a model without an adapter: as it is).

    `method`: the run's train.method (None: read from the adapter). An adapter that cannot be
    merged (virtual tokens, prefixes) is refused with a ConfigError, or with `keep_unmergeable`
    returned as it is, to be run unmerged (evaluation)."""
    if not hasattr(model, "peft_config"):
        return model
    spec = get_method(method) if method is not None else adapter_method(model)
    if spec is not None:
        unmergeable = spec.unmergeable
    else:  # an adapter type of peft's that no method here trains: peft knows whether it is virtual tokens
        config = model.peft_config.get("default")
        unmergeable = VIRTUAL_TOKENS if getattr(config, "is_prompt_learning", False) else None
    if unmergeable:
        if keep_unmergeable:
            return model
        raise ConfigError(f"a {spec.name if spec else 'prompt-learning'} adapter {unmergeable}")
    return model.merge_and_unload()


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
