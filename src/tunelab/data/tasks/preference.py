"""Preference pairs: a context, a chosen answer and a rejected one (DPO, IPO, SimPO, ORPO).

Three layouts are read, whichever the record has (tunelab.data.preference renders and tokenises them):

- TRL:           {prompt, chosen, rejected}: plain strings (the prompt is one user message), or
                 conversations (`prompt` a list of messages, `chosen`/`rejected` one assistant
                 message or a list holding one); without `prompt`, `chosen` and `rejected` are
                 whole conversations that share every message but the last (TRL's implicit prompt).
- LLaMA-Factory: {conversations: [{from, value}, ...], chosen: {from: gpt, value}, rejected: {...}}
                 (ShareGPT; OpenAI `messages` work the same way); the context ends with a user turn.

Only the final answer is scored; earlier turns are context. Messages are read by
tunelab.data.messages (OpenAI or ShareGPT), so errors name the file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.data.errors import BadRecord
from tunelab.data.messages import _message as read_message  # one message, with its field in errors
from tunelab.data.tasks.fields import Parts, column, strip_suffixes

ROLES = {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected", "messages": "conversations",
         "system": "system"}
# `messages` falls back to OpenAI's `messages` when a record has no `conversations` column.
OPENAI_COLUMN = "messages"


@dataclass
class PreferenceParts(Parts):
    """Parts of a pair (the chosen answer is `target`) or of an unpaired example (kto)."""

    rejected: str | None = None  # the rejected answer's text (pairs)
    desirable: bool | None = None  # kto: whether the answer is a desirable one


def default_instruction(task, labels=None) -> str:
    return ""


def parts(record, task, fields: dict, ctx) -> Parts:
    prompt_col = column(fields, "prompt", ROLES["prompt"])
    chosen_col = column(fields, "chosen", ROLES["chosen"])
    rejected_col = column(fields, "rejected", ROLES["rejected"])
    context, chosen = context_and_answer(record, fields, prompt_col, chosen_col)
    if context is None:  # implicit prompt: both are whole conversations sharing their context
        rejected_context, rejected = implicit(record, rejected_col)
        if [(m["role"], m["content"]) for m in rejected_context] != [(m["role"], m["content"]) for m in chosen[0]]:
            raise BadRecord(record.where, f"fields '{chosen_col}' and '{rejected_col}' must share every message "
                                          f"but the last (no '{prompt_col}' field)")
        context, chosen = chosen
    else:
        rejected = answer_message(record, rejected_col)
    chosen_text = strip_suffixes(chosen["content"], task.strip_suffix, record, chosen_col)
    rejected_text = strip_suffixes(rejected["content"], task.strip_suffix, record, rejected_col)
    return conversation_parts(record, task, ctx, context, chosen_text, rejected=rejected_text)


def context_and_answer(record, fields: dict, prompt_col: str, answer_col: str):
    """(context messages, answer message) of a record; (None, (context, answer)) when the answer
    column holds a whole conversation and there is no prompt (TRL's implicit prompt)."""
    data = record.data
    msg_col = column(fields, "messages", ROLES["messages"])
    if "messages" not in fields and msg_col not in data and OPENAI_COLUMN in data:
        msg_col = OPENAI_COLUMN
    if prompt_col in data and data[prompt_col] is not None:
        context = prompt_messages(record, prompt_col)
    elif msg_col in data and data[msg_col] is not None:
        context = message_list(record, msg_col)
    elif isinstance(data.get(answer_col), list) and len(data[answer_col]) > 1:
        return None, implicit(record, answer_col)
    else:
        known = ", ".join(sorted(map(str, data))) or "none"
        raise BadRecord(record.where, f"missing field '{prompt_col}' or '{msg_col}' (the context; record has: {known})")
    system = data.get(column(fields, "system", ROLES["system"]))
    if isinstance(system, str) and system.strip() and context[0]["role"] != "system":
        context.insert(0, {"role": "system", "content": system})
    if context[-1]["role"] not in ("user", "tool"):
        raise BadRecord(record.where, f"field '{prompt_col if prompt_col in data else msg_col}': the context must "
                                      f"end with a user (or tool) message, not {context[-1]['role']}")
    return context, answer_message(record, answer_col)


def prompt_messages(record, col: str) -> list[dict]:
    value = record.data[col]
    if isinstance(value, str):
        if not value.strip():
            raise BadRecord(record.where, f"field '{col}' is empty")
        return [{"role": "user", "content": value}]
    return message_list(record, col)


def message_list(record, col: str) -> list[dict]:
    value = record.data[col]
    if not isinstance(value, list) or not value:
        raise BadRecord(record.where, f"field '{col}' must be text or a non-empty list of messages")
    return [read_message(record, f"field '{col}[{i}]'", item)[0] for i, item in enumerate(value)]


def answer_message(record, col: str) -> dict:
    """An answer: text, one assistant message ({role, content} or {from, value}), or a list of one."""
    data = record.data
    if col not in data or data[col] is None:
        known = ", ".join(sorted(map(str, data))) or "none"
        raise BadRecord(record.where, f"missing field '{col}' (record has: {known})")
    value, where = data[col], f"field '{col}'"
    if isinstance(value, list):
        if len(value) != 1:
            raise BadRecord(record.where, f"{where} must hold one assistant message, got {len(value)}")
        value, where = value[0], f"field '{col}[0]'"
    if isinstance(value, str):
        if not value.strip():
            raise BadRecord(record.where, f"{where} is empty")
        return {"role": "assistant", "content": value}
    message = read_message(record, where, value)[0]
    if message["role"] != "assistant":
        raise BadRecord(record.where, f"{where} must be an assistant message, got role {message['role']}")
    return message


def implicit(record, col: str) -> tuple[list[dict], dict]:
    """A whole conversation in one column: (its context, its final assistant message)."""
    messages = message_list(record, col)
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise BadRecord(record.where, f"field '{col}': the last message must be from the assistant")
    return messages[:-1], messages[-1]


def conversation_parts(record, task, ctx, context: list[dict], answer: str, **extra) -> PreferenceParts:
    """A context and its answer as chat Parts: the answer is the final assistant turn, the only
    one scored; `extra`: rejected= (pairs) or desirable= (kto)."""
    turns = [dict(m) for m in context] + [{"role": "assistant", "content": answer}]
    users = [i for i, m in enumerate(turns) if m["role"] == "user"]
    if not users:
        raise BadRecord(record.where, "the context has no user message")
    user_index = users[-1]
    user = turns[user_index]["content"]
    if ctx.instruction:
        user = f"{ctx.instruction}\n\n{user}"
    history = [m for i, m in enumerate(turns[:-1]) if i != user_index]
    trained = [False] * (len(turns) - 1) + [True]
    variables = {"messages": turns, "user": user, "prompt": user, "chosen": answer, **extra}
    return PreferenceParts(user=user, target=answer, references=[answer], history=history, variables=variables,
                           turns=turns, trained=trained, user_index=user_index, **extra)
