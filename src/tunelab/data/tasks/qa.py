"""Question answering: a question (optionally with a context passage) -> an answer.

Several gold answers (several columns, or one column holding a list) become `references`.
"""

from __future__ import annotations

from tunelab.data.tasks.fields import Parts, column, get_text, references

ROLES = {"question": "question", "context": "context", "answer": "answer"}


def default_instruction(task, labels=None) -> str:
    return "Answer the question."


def parts(record, task, fields: dict, ctx) -> Parts:
    question = get_text(record, column(fields, "question", ROLES["question"]))
    # Optional: required when mapped explicitly, else used when the record has a `context` column.
    context = get_text(record, column(fields, "context", ROLES["context"]), required="context" in fields)
    refs = references(record, task, column(fields, "answer", ROLES["answer"]), "answer")
    body = f"Question: {question}" if context is None else f"Context: {context}\n\nQuestion: {question}"
    user = f"{ctx.instruction}\n\n{body}"
    variables = {"question": question, "context": context, "answer": refs[0]}
    return Parts(user=user, target=refs[0], references=refs, variables=variables)
