"""(IA)^3 (Liu et al. 2022) through peft: learned rescaling of keys, values and FFN activations.

Which modules are rescaled depends on the family's module names (GPT-2's c_attn, Falcon's
query_key_value, T5's k/v/wo, ...). Unless the user names them, they are peft's defaults for the
model type, else the Llama-style names (k_proj, v_proj, down_proj) when the model has all of them;
a model with neither is refused with its linear layers listed, so the user can choose.
"""

from __future__ import annotations

from tunelab.config.base import ConfigError
from tunelab.models.tuners.base import Method, peft_refusals, peft_task_type

LLAMA_STYLE = (["k_proj", "v_proj", "down_proj"], ["down_proj"])


def linear_names(model) -> list[str]:
    """Full names of the layers IA3 can rescale (Linear, and GPT-2's Conv1D)."""
    import torch.nn as nn
    from transformers.pytorch_utils import Conv1D

    return [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))]


def _present(target: str, names: list[str]) -> bool:
    return any(n == target or n.endswith("." + target) for n in names)  # peft's suffix match


def default_modules(model) -> tuple[list[str], list[str]]:
    """(target_modules, feedforward_modules) for a model whose user did not choose them."""
    from peft.utils.constants import (TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD,
                                      TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS)

    model_type = getattr(model.config, "model_type", type(model).__name__)
    names = linear_names(model)
    candidates = [(list(TARGETS[model_type]), list(FEEDFORWARD.get(model_type, [])))] if model_type in TARGETS else []
    for targets, feedforward in candidates + [LLAMA_STYLE]:
        if all(_present(t, names) for t in targets):
            return targets, feedforward
    head = model.get_output_embeddings()
    leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if n in names and m is not head})
    tried = "; ".join(", ".join(t) for t, _ in candidates + [LLAMA_STYLE])
    raise ConfigError(f"train.ia3: no default modules fit {model_type} models (tried: {tried}); set "
                      f"train.ia3.target_modules and train.ia3.feedforward_modules (a subset of them) from this "
                      f"model's linear layers: {', '.join(leaves)}")


def apply(model, train_cfg, architecture, model_path):
    from peft import IA3Config, get_peft_model

    opts = train_cfg.ia3
    targets, feedforward = opts.target_modules, opts.feedforward_modules
    if targets is None:
        targets, default_ff = default_modules(model)
        feedforward = default_ff if feedforward is None else feedforward
    elif feedforward is None:  # the user's targets: the default feed-forward layers among them
        wanted = [targets] if isinstance(targets, str) else targets
        try:
            default_ff = default_modules(model)[1]
        except ConfigError:
            default_ff = []
        feedforward = [m for m in default_ff if m in wanted]
    config = IA3Config(task_type=peft_task_type(architecture), target_modules=targets,
                       feedforward_modules=feedforward)
    with peft_refusals("ia3", model):
        return get_peft_model(model, config)


METHOD = Method("ia3", apply, options=("ia3",), peft=True, peft_type="IA3", half_frozen_weights=True,
                regularization="its learned vectors rescale activations, not a weight change this penalty can weigh")
