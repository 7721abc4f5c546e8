"""Translation: a source-language text -> its translation (one or several references)."""

from __future__ import annotations

from tunelab.data.tasks.fields import Parts, column, get_text, get_texts, strip_suffixes

ROLES = {"text": "source", "target": "target"}


def default_instruction(task, labels=None) -> str:
    if task.source_lang and task.target_lang:
        return f"Translate the following text from {task.source_lang} to {task.target_lang}."
    if task.target_lang:
        return f"Translate the following text to {task.target_lang}."
    return "Translate the following text."


def parts(record, task, fields: dict, ctx) -> Parts:
    text = get_text(record, column(fields, "text", ROLES["text"]))
    target_col = column(fields, "target", ROLES["target"])
    refs = [strip_suffixes(r, task.strip_suffix, record, target_col)
            for r in get_texts(record, target_col, role="target")]
    user = f"{ctx.instruction}\n\n{text}"
    return Parts(user=user, target=refs[0], references=refs, variables={"text": text, "target": refs[0]})
