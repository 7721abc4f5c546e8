"""Partial fine-tuning: train only the last N transformer layers and/or named modules.

The layer stacks are found as the nn.ModuleLists named `layers`, `h` or `block` (Llama, GPT-2,
T5 encoder and decoder); the last `last_n_layers` of each are trained.
"""

from __future__ import annotations

from tunelab.config.base import ConfigError
from tunelab.models.tuners.base import Method

LAYER_LIST_NAMES = ("layers", "h", "block")


def layer_stacks(model):
    import torch.nn as nn

    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in LAYER_LIST_NAMES:
            yield name, module


def apply(model, train_cfg, architecture, model_path):
    opts = train_cfg.freeze
    for p in model.parameters():
        p.requires_grad_(False)
    stacks = list(layer_stacks(model))
    if opts.last_n_layers and not stacks:
        raise ConfigError("train.freeze.last_n_layers: no layer list (layers/h/block) found in this model")
    for _, stack in stacks:
        for layer in list(stack)[len(stack) - min(opts.last_n_layers, len(stack)):]:
            for p in layer.parameters():
                p.requires_grad_(True)
    for pattern in opts.modules:
        matched = [p for n, p in model.named_parameters() if pattern in n]
        if not matched:
            raise ConfigError(f"train.freeze.modules: '{pattern}' matches no parameter name")
        for p in matched:
            p.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("train.freeze: nothing left to train (last_n_layers is 0 and modules is empty)")
    return model


METHOD = Method("freeze", apply, options=("freeze",))
