"""Read a YAML config, apply `key.sub=value` overrides, validate, and write the resolved copy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from tunelab.config.base import ConfigError


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=1e-4` -> (['train', 'lr'], 0.0001). The value is read as a YAML scalar."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key.sub=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return [part for part in key.strip().split(".")], value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                node = node[_list_index(part, path, i)]
                continue
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        last = path[-1]
        if isinstance(node, list):
            node[_list_index(last, path, len(path) - 1)] = value
        else:
            node[last] = value
    return data


def _list_index(part: str, path: list[str], i: int) -> int:
    try:
        return int(part)
    except ValueError:
        raise ConfigError(f"override key '{'.'.join(path)}': '{part}' must be a list index") from None


def format_validation_error(err: ValidationError, source: str) -> str:
    # One line (the CLI prints `tunelab: error: <this>`): `file: key: problem`, problems joined by "; ".
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = " ".join(e["msg"].removeprefix("Value error, ").split())
        problems.append(f"{loc}: {msg}" if loc else msg)
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source}: {len(problems)} problems: " + "; ".join(problems)


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), data: dict | None = None):
    """Load and validate an experiment config. Relative data paths resolve against the file's folder."""
    from tunelab.config.schema import ExperimentConfig

    raw = read_yaml(path) if path is not None else dict(data or {})
    raw = apply_overrides(raw, overrides)
    source = str(path) if path is not None else "<config>"
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None
    cfg.config_dir = str(Path(path).resolve().parent) if path is not None else str(Path.cwd())
    return cfg


def write_resolved(cfg, folder: str | Path) -> Path:
    """Write the fully resolved config (defaults filled in) next to an output."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "config.resolved.yaml"
    payload = json.loads(cfg.model_dump_json())
    from tunelab.files import write_text  # lazily: tunelab.files imports this package

    write_text(out, yaml.safe_dump(payload, sort_keys=False))
    return out
