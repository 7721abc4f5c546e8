"""Chat messages: a list of {role, content}; the last message (from the assistant) is trained.

Earlier turns, assistant turns included, are part of the prompt and masked from the loss.
"""

from __future__ import annotations

from tunelab.data.errors import BadRecord
from tunelab.data.tasks.fields import Parts, column, strip_suffixes

ROLES = {"messages": "messages"}
MESSAGE_ROLES = ("system", "user", "assistant")


def default_instruction(task, labels=None) -> str:
    return ""


def parts(record, task, fields: dict, ctx) -> Parts:
    col = column(fields, "messages", ROLES["messages"])
    messages = record.data.get(col)
    if messages is None:
        known = ", ".join(sorted(map(str, record.data))) or "none"
        raise BadRecord(record.where, f"missing field '{col}' (record has: {known})")
    if not isinstance(messages, list) or len(messages) < 2:
        raise BadRecord(record.where, f"field '{col}' must be a list of at least two messages")
    clean = []
    for i, message in enumerate(messages):
        where = f"field '{col}[{i}]'"
        if not isinstance(message, dict):
            raise BadRecord(record.where, f"{where} must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in MESSAGE_ROLES:
            raise BadRecord(record.where, f"{where}.role must be one of {', '.join(MESSAGE_ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise BadRecord(record.where, f"{where}.content must be text, got {type(content).__name__}")
        if not content.strip():
            raise BadRecord(record.where, f"{where}.content is empty")
        clean.append({"role": role, "content": content})
    if clean[-1]["role"] != "assistant":
        raise BadRecord(record.where, f"field '{col}': the last message must be from the assistant")
    if clean[-2]["role"] != "user":
        raise BadRecord(record.where, f"field '{col}': the message before the answer must be from the user")
    target = strip_suffixes(clean[-1]["content"], task.strip_suffix, record, col)
    user = clean[-2]["content"]
    if ctx.instruction:
        user = f"{ctx.instruction}\n\n{user}"
    return Parts(user=user, target=target, references=[target], history=clean[:-2],
                 variables={"messages": clean, "user": user})
