"""Raw prompt / completion pairs (prompt templates already applied, e.g. T0/P3)."""

from __future__ import annotations

from tunelab.data.tasks.fields import Parts, column, get_text, strip_suffixes

ROLES = {"prompt": "prompt", "completion": "completion"}


def default_instruction(task, labels=None) -> str:
    return ""


def parts(record, task, fields: dict, ctx) -> Parts:
    prompt = get_text(record, column(fields, "prompt", ROLES["prompt"]))
    completion_col = column(fields, "completion", ROLES["completion"])
    completion = strip_suffixes(get_text(record, completion_col), task.strip_suffix, record, completion_col)
    user = prompt if not ctx.instruction else f"{ctx.instruction}\n\n{prompt}"
    return Parts(user=user, target=completion, references=[completion],
                 variables={"prompt": prompt, "completion": completion})
