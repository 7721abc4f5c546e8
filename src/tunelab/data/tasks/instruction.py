"""Alpaca-style instruction / optional input / output."""

from __future__ import annotations

from tunelab.data.tasks.fields import Parts, column, get_text, strip_suffixes

ROLES = {"instruction": "instruction", "input": "input", "output": "output"}


def default_instruction(task, labels=None) -> str:
    return ""  # the record carries its own instruction


def parts(record, task, fields: dict, ctx) -> Parts:
    instruction = get_text(record, column(fields, "instruction", ROLES["instruction"]))
    # Alpaca leaves `input` empty for most records: absent or empty means no input.
    input_text = get_text(record, column(fields, "input", ROLES["input"]), required=False)
    output_col = column(fields, "output", ROLES["output"])
    output = strip_suffixes(get_text(record, output_col), task.strip_suffix, record, output_col)
    user = instruction if not input_text else f"{instruction}\n\n{input_text}"
    if ctx.instruction:
        user = f"{ctx.instruction}\n\n{user}"
    variables = {"instruction": instruction, "input": input_text or "", "output": output}
    return Parts(user=user, target=output, references=[output], variables=variables)
