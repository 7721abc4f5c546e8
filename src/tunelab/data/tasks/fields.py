"""Reading mapped fields from a record, with errors that name the file, line and field.

Also the record layout shared by the kinds that differ only in their default columns and
instruction (summarization, translation), so that the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.data.errors import BadRecord


@dataclass
class Parts:
    """What a task template makes of one record, before the chat template and tokenisation."""

    user: str  # the user message (default layout; a user Jinja template replaces it)
    target: str  # the answer the model is trained to produce
    references: list[str]  # all gold answers, target first
    variables: dict = field(default_factory=dict)  # for the user Jinja template
    label: str | None = None
    choices: list[str] | None = None  # multiple choice: candidate answers as the model writes them
    choice_texts: list[str] | None = None  # multiple choice: the option texts
    answer_index: int | None = None
    history: list[dict] | None = None  # chat: earlier messages (system/user/assistant) before `user`
    system: str | None = None  # the task's system prompt as rendered for this record
    # chat: the whole conversation (ending with the final answer), which assistant turns are
    # trained, the tool schemas, and where `user` (the last user message) sits in `turns`
    turns: list[dict] | None = None
    trained: list[bool] | None = None
    tools: list[dict] | None = None
    user_index: int | None = None


def column(fields: dict, role: str, default):
    """The source column (or list of columns) mapped to `role`."""
    return fields.get(role, default)


def get_text(record, col: str, *, required: bool = True, allow_empty: bool = False) -> str | None:
    """A text field: strings as they are, numbers as text; missing/empty/wrong type is an error."""
    data = record.data
    if col not in data or data[col] is None:
        if not required:
            return None
        known = ", ".join(sorted(map(str, data))) or "none"
        raise BadRecord(record.where, f"missing field '{col}' (record has: {known})")
    value = data[col]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRecord(record.where, f"field '{col}' must be text, got {_type_name(value)}")
    text = value if isinstance(value, str) else _number_text(value)
    if not allow_empty and not text.strip():
        if not required:
            return None
        raise BadRecord(record.where, f"field '{col}' is empty")
    return text


def get_texts(record, cols, *, role: str) -> list[str]:
    """One or more text answers: several columns, or one column holding a list of strings."""
    if isinstance(cols, list):
        return [get_text(record, c) for c in cols]
    value = record.data.get(cols)
    if isinstance(value, list):
        if not value:
            raise BadRecord(record.where, f"field '{cols}' ({role}) is an empty list")
        texts = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise BadRecord(record.where, f"field '{cols}[{i}]' must be text, got {_type_name(item)}")
            if not item.strip():
                raise BadRecord(record.where, f"field '{cols}[{i}]' is empty")
            texts.append(item)
        return texts
    return [get_text(record, cols)]


def strip_suffixes(text: str, suffixes: list[str], record, col) -> str:
    for suffix in suffixes:
        if suffix and text.endswith(suffix):
            text = text[: -len(suffix)]
    if not text.strip():
        raise BadRecord(record.where, f"field '{col}' is empty after removing {suffixes}")
    return text


def references(record, task, col, role: str) -> list[str]:
    """A record's gold answers (one or several), each with the task's `strip_suffix` removed."""
    return [strip_suffixes(r, task.strip_suffix, record, col) for r in get_texts(record, col, role=role)]


def text_to_references(record, task, fields: dict, ctx, roles: dict) -> Parts:
    """One text -> one or several reference texts, the first one trained: the instruction above the
    text, `text` and `target` for a user Jinja template. `roles` holds the kind's default columns."""
    text = get_text(record, column(fields, "text", roles["text"]))
    refs = references(record, task, column(fields, "target", roles["target"]), "target")
    user = f"{ctx.instruction}\n\n{text}"
    return Parts(user=user, target=refs[0], references=refs, variables={"text": text, "target": refs[0]})


def _number_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )
