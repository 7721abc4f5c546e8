"""Task templates: one module per kind, each turning a raw record into `Parts`.

A module defines `ROLES` (template role -> default source column), `default_instruction(task)`
and `parts(record, task, fields) -> Parts`. Field access goes through tunelab.data.tasks.fields,
which raises BadRecord naming the file, line and field.
"""

from __future__ import annotations

from importlib import import_module

from tunelab.config.data import TASK_KINDS as KINDS  # one module per kind, named as the kind
from tunelab.data.tasks.fields import Parts


def task_module(kind: str):
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; known: {', '.join(KINDS)}")
    return import_module(f"tunelab.data.tasks.{kind}")


__all__ = ["KINDS", "Parts", "task_module"]
