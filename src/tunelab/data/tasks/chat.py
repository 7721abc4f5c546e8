"""Chat conversations: OpenAI `messages` or ShareGPT `conversations` (tunelab.data.messages).

Every assistant turn is trained by default (`train_on: all`); `train_on: last` trains the final
one only, and a message's own `weight: 0|1` / `train: true|false` overrides either. User and tool
turns, role headers and few-shot turns are never trained. Evaluation scores the final assistant
turn, with everything before it as the prompt.
"""

from __future__ import annotations

from tunelab.data.messages import read_conversation
from tunelab.data.tasks.fields import Parts, column, strip_suffixes

# `messages` falls back to ShareGPT's `conversations` when a record has no `messages` column;
# `tools` (a list of JSON schemas, or its JSON text) and `system` (text) are optional.
ROLES = {"messages": "messages", "tools": "tools", "system": "system"}
SHAREGPT_COLUMN = "conversations"


def default_instruction(task, labels=None) -> str:
    return ""


def parts(record, task, fields: dict, ctx) -> Parts:
    col = column(fields, "messages", ROLES["messages"])
    if "messages" not in fields and col not in record.data and SHAREGPT_COLUMN in record.data:
        col = SHAREGPT_COLUMN
    conv = read_conversation(record, col, task.train_on or "all", column(fields, "tools", ROLES["tools"]),
                             column(fields, "system", ROLES["system"]))
    turns = conv.messages
    for i, message in enumerate(turns):
        if message["role"] == "assistant" and message["content"].strip():
            message["content"] = strip_suffixes(message["content"], task.strip_suffix, record, f"{col}[{i}]")
    user_index = max(i for i, m in enumerate(turns) if m["role"] == "user")
    user = turns[user_index]["content"]
    if ctx.instruction:
        user = f"{ctx.instruction}\n\n{user}"
    target = turns[-1]["content"]
    history = [m for i, m in enumerate(turns[:-1]) if i != user_index]
    return Parts(user=user, target=target, references=[target], history=history,
                 variables={"messages": turns, "user": user}, turns=turns, trained=conv.trained,
                 tools=conv.tools, user_index=user_index)
