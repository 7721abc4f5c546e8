"""Helpers for data-pipeline tests: write small source files and build configs around them."""

from __future__ import annotations

import json

from tunelab.config import load_config


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def make_config(tmp_path, tasks: list[dict], **data):
    """An ExperimentConfig whose relative paths resolve against tmp_path."""
    cfg = load_config(data={"seed": 7, "data": {"tasks": tasks, **data}})
    cfg.config_dir = str(tmp_path)
    return cfg
