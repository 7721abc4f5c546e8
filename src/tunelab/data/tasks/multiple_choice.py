"""Multiple choice: a question and lettered options -> the letter (or the text) of the answer.

`choices` on the example are the candidate answers exactly as the model would write them
(letters with `answer_format: letter`, option texts with `text`), so log-likelihood scoring
compares `prompt_text + choices[i]`; `choice_texts` always holds the option texts.
The answer field may be a letter (MMLU), a 0-based index, or the text of one option.
"""

from __future__ import annotations

from tunelab.data.errors import BadRecord
from tunelab.data.tasks.fields import Parts, column, get_text, get_texts

ROLES = {"question": "question", "choices": "choices", "answer": "answer"}
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def default_instruction(task, labels=None) -> str:
    if task.answer_format == "letter":
        return "Answer the following multiple-choice question with the letter of the correct option."
    return "Answer the following multiple-choice question with the correct option."


def answer_index(record, col: str, options: list[str]) -> int:
    value = record.data.get(col)
    if value is None:
        known = ", ".join(sorted(map(str, record.data))) or "none"
        raise BadRecord(record.where, f"missing field '{col}' (record has: {known})")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRecord(record.where, f"field '{col}' must be a letter, index or option text, "
                                      f"got {type(value).__name__}")
    text = str(value).strip()
    letters = LETTERS[: len(options)]
    if len(text) == 1 and text.upper() in letters:
        return letters.index(text.upper())
    if isinstance(value, int) or text.isdigit():
        index = int(text)
        if 0 <= index < len(options):
            return index
    if text in options:
        return options.index(text)
    raise BadRecord(record.where, f"field '{col}': answer '{text}' is not one of the letters "
                                  f"{', '.join(letters)}, an index below {len(options)}, or an option text")


def parts(record, task, fields: dict, ctx) -> Parts:
    question = get_text(record, column(fields, "question", ROLES["question"]))
    options = get_texts(record, column(fields, "choices", ROLES["choices"]), role="choices")
    if len(options) < 2 or len(options) > len(LETTERS):
        raise BadRecord(record.where, f"multiple choice needs 2 to 26 options, got {len(options)}")
    index = answer_index(record, column(fields, "answer", ROLES["answer"]), options)
    letters = list(LETTERS[: len(options)])
    listing = "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options))
    user = f"{ctx.instruction}\n\n{question}\n\n{listing}"
    choices = letters if task.answer_format == "letter" else options
    variables = {"question": question, "choices": options, "letters": letters, "answer": choices[index],
                 "listing": listing}
    return Parts(user=user, target=choices[index], references=[choices[index]], variables=variables,
                 choices=choices, choice_texts=options, answer_index=index)
