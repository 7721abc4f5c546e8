"""An optimizer state dict as tensors (for safetensors) and the rest (for JSON), and back.

Both checkpoint layouts use it: checkpoint.py's whole-model files (state keyed by parameter
position) and distributed.py's sharded ones (keyed by parameter name). It lives apart from both so
that each imports it without importing the other.
"""

from __future__ import annotations

import torch


def split_optimizer_state(sd: dict) -> tuple[dict, dict]:
    """An optimizer state dict as {"<param>/<name>": tensor} and the rest for JSON (param groups and
    scalar state); <param> is a position (optimizer.state_dict()) or a parameter name (FSDP's)."""
    tensors, scalars = {}, {}
    for param, entry in sd["state"].items():
        for key, value in entry.items():
            (tensors if torch.is_tensor(value) else scalars)[f"{param}/{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def join_optimizer_state(tensors: dict, meta: dict, param_key=int) -> dict:
    """split_optimizer_state's inverse; param_key turns the <param> text back (int: a position)."""
    state: dict = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        param, name = key.split("/", 1)
        state.setdefault(param_key(param), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}
