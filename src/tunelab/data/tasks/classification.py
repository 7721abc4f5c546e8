"""Classification: a text (and optionally a second text) -> a verbalised label.

Label values map to words through `labels:` ({0: negative, 1: positive}, or a list where the
value is the index); a value that already is one of the words is accepted as it is.
"""

from __future__ import annotations

from tunelab.data.errors import BadRecord
from tunelab.data.tasks.fields import Parts, column, get_text

ROLES = {"text": "text", "text_pair": "text_pair", "label": "label"}


def default_instruction(task, labels: list[str] | None) -> str:
    if labels:
        return f"Classify the text. Answer with one of: {', '.join(labels)}."
    return "Classify the text."


def label_words(task) -> dict[str, str] | None:
    """value-as-text -> verbalizer, or None when labels are taken from the data."""
    if task.labels is None:
        return None
    if isinstance(task.labels, list):
        return {str(i): word for i, word in enumerate(task.labels)}
    return dict(task.labels)


def raw_label(record, col: str) -> str:
    if col not in record.data or record.data[col] is None:
        known = ", ".join(sorted(map(str, record.data))) or "none"
        raise BadRecord(record.where, f"missing field '{col}' (record has: {known})")
    value = record.data[col]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRecord(record.where, f"field '{col}' must be a label (text or integer), "
                                      f"got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        raise BadRecord(record.where, f"field '{col}' is empty")
    return text


def verbalize(record, col: str, words: dict[str, str] | None) -> str:
    value = raw_label(record, col)
    if words is None:
        return value
    if value in words:
        return words[value]
    if value in words.values():
        return value
    known = ", ".join(f"{k} ({v})" for k, v in words.items())
    raise BadRecord(record.where, f"field '{col}': unknown label '{value}' (known: {known})")


def parts(record, task, fields: dict, ctx) -> Parts:
    text = get_text(record, column(fields, "text", ROLES["text"]))
    # Optional: required when mapped explicitly, else used when the record has a `text_pair` column.
    text_pair = get_text(record, column(fields, "text_pair", ROLES["text_pair"]), required="text_pair" in fields)
    label = verbalize(record, column(fields, "label", ROLES["label"]), ctx.label_words)
    body = f"Text: {text}" if text_pair is None else f"Text 1: {text}\nText 2: {text_pair}"
    user = f"{ctx.instruction}\n\n{body}"
    variables = {"text": text, "text_pair": text_pair, "label": label}
    return Parts(user=user, target=label, references=[label], variables=variables, label=label)
