"""Unpaired preference examples for KTO: one answer and whether it is desirable.

- TRL:           {prompt, completion, label}: plain strings, or conversations (`prompt` a list of
                 messages, `completion` one assistant message or a list holding one).
- LLaMA-Factory: {messages: [...], label: true|false}: OpenAI messages or ShareGPT
                 `conversations`; the last assistant message is the judged answer.

`label` is a boolean (true/false, or 1/0, or the words "true"/"false"). Only the answer is scored.
"""

from __future__ import annotations

from tunelab.data.errors import BadRecord
from tunelab.data.tasks.fields import Parts, column, strip_suffixes
from tunelab.data.tasks.preference import context_and_answer, conversation_parts, implicit

ROLES = {"prompt": "prompt", "completion": "completion", "messages": "messages", "label": "label",
         "system": "system"}
SHAREGPT_COLUMN = "conversations"
_WORDS = {"true": True, "false": False}


def default_instruction(task, labels=None) -> str:
    return ""


def parts(record, task, fields: dict, ctx) -> Parts:
    prompt_col = column(fields, "prompt", ROLES["prompt"])
    answer_col = column(fields, "completion", ROLES["completion"])
    msg_col = column(fields, "messages", ROLES["messages"])
    data = record.data
    if "messages" not in fields and msg_col not in data and SHAREGPT_COLUMN in data:
        msg_col = SHAREGPT_COLUMN
    if prompt_col in data or answer_col in data or msg_col not in data:
        context, answer = context_and_answer(record, {**fields, "messages": msg_col}, prompt_col, answer_col)
        if context is None:
            context, answer = answer
        where = answer_col
    else:  # the whole conversation in one column; its last message is the judged answer
        context, answer = implicit(record, msg_col)
        system = data.get(column(fields, "system", ROLES["system"]))
        if isinstance(system, str) and system.strip() and context[0]["role"] != "system":
            context.insert(0, {"role": "system", "content": system})
        where = msg_col
    text = strip_suffixes(answer["content"], task.strip_suffix, record, where)
    good = desirable(record, column(fields, "label", ROLES["label"]))
    return conversation_parts(record, task, ctx, context, text, desirable=good)


def desirable(record, col: str) -> bool:
    value = record.data.get(col)
    if value is None:
        known = ", ".join(sorted(map(str, record.data))) or "none"
        raise BadRecord(record.where, f"missing field '{col}' (whether the answer is desirable; record has: {known})")
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _WORDS:
        return _WORDS[value.strip().lower()]
    raise BadRecord(record.where, f"field '{col}' must be true or false, got {value!r}")
