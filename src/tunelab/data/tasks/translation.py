"""Translation: a source-language text -> its translation (one or several references)."""

from __future__ import annotations

from tunelab.data.tasks.fields import Parts, text_to_references

ROLES = {"text": "source", "target": "target"}


def default_instruction(task, labels=None) -> str:
    if task.source_lang and task.target_lang:
        return f"Translate the following text from {task.source_lang} to {task.target_lang}."
    if task.target_lang:
        return f"Translate the following text to {task.target_lang}."
    return "Translate the following text."


def parts(record, task, fields: dict, ctx) -> Parts:
    return text_to_references(record, task, fields, ctx, ROLES)
