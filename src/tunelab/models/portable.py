"""Adapters that load anywhere: the base model is named by its alias, hub id or your folder, never a
cache path.

peft writes `base_model_name_or_path` as the path the base was loaded from. For the embedded alias
that is a folder under TUNELAB_HOME (`.../models/smollm2-135m-instruct`), and for a hub id a
snapshot under HF_HOME: neither exists on another machine, or after the cache moves. tunelab
rewrites it to the name the config gave (`model.name`: the alias, the hub id, or an absolute path
to a local folder of yours) and records `revision`; `base_model_of(adapter)` reads it back, and
tunelab.models.resolve_model turns it into weights on whichever machine loads the adapter (an alias
is converted there again from its package). The embedded alias stays an alias, not the hub id of
the model it was made from: its weights are a de-quantized Q4_1 GGUF, not the hub's.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.base import UserError


def portable_name(model_cfg) -> str:
    from tunelab.models.resolver import ALIASES

    name = model_cfg.name
    if name in ALIASES:
        return name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name  # a local folder of yours, or a hub id


# adapter_config.json keys PEFT keeps as sets of module names (their order means nothing)
SET_VALUED = ("target_modules", "modules_to_save", "exclude_modules", "feedforward_modules")


def record_base(adapter_dir: str | Path, model_cfg) -> None:
    """Rewrite an adapter folder's adapter_config.json to name its base portably, with its module
    lists in sorted order: PEFT writes sets in Python's hash order, which changes between processes,
    and the same adapter must give the same bytes (the evaluation cache keys on them)."""
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.exists():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = portable_name(model_cfg)
    config["revision"] = model_cfg.revision
    for key in SET_VALUED:
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    from tunelab.files import write_text

    write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def base_model_of(adapter_dir: str | Path) -> str:
    """The base model an adapter folder was trained on (its adapter_config.json)."""
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.exists():
        raise UserError(f"{adapter_dir}: not a PEFT adapter folder (no adapter_config.json)")
    name = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not name:
        raise UserError(f"{path}: names no base model (base_model_name_or_path); give it with --model")
    return name
