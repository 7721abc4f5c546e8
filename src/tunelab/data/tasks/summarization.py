"""Summarisation: a document or dialogue -> a summary (one or several reference summaries)."""

from __future__ import annotations

from tunelab.data.tasks.fields import Parts, text_to_references

ROLES = {"text": "text", "target": "summary"}


def default_instruction(task, labels=None) -> str:
    return "Summarize the following text."


def parts(record, task, fields: dict, ctx) -> Parts:
    return text_to_references(record, task, fields, ctx, ROLES)
