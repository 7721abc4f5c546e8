"""Chat records as one message list, from OpenAI `messages` or ShareGPT `conversations`.

OpenAI:   {"role": system|user|assistant|tool, "content": "...", "tool_calls": [...], "name", "tool_call_id"}
ShareGPT: {"from": system|human|gpt|function_call|observation, "value": "..."} (user/assistant/tool too)

A ShareGPT `function_call` is an assistant turn that calls a tool (its value: a JSON
`{"name", "arguments"}`); an `observation` is the tool's answer (role `tool`). Every message
comes out as {role, content} with text content; a tool-calling turn also keeps `tool_calls`
(OpenAI's shape) for templates that write calls themselves, and its content is the calls as
JSON text for templates that do not (data/conversation.py decides which).

Which assistant turns are trained: a message's own `weight` (0 or 1) or `train` (true/false),
else the task's `train_on` (all: every assistant turn; last: the final one only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tunelab.data.errors import BadRecord

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
                  "function": "tool"}
PASS_KEYS = ("name", "tool_call_id")  # OpenAI keys templates may use; kept as they are


@dataclass
class Conversation:
    messages: list[dict]  # role, content (text); tool-calling turns also tool_calls and _content
    trained: list[bool]  # per message: an assistant turn whose tokens are trained
    tools: list[dict] | None = None  # tool schemas for the chat template


def read_conversation(record, col: str, train_on: str, tools_col: str | None = None,
                      system_col: str | None = None) -> Conversation:
    raw = record.data.get(col)
    if raw is None:
        known = ", ".join(sorted(map(str, record.data))) or "none"
        raise BadRecord(record.where, f"missing field '{col}' (record has: {known})")
    if not isinstance(raw, list) or len(raw) < 2:
        raise BadRecord(record.where, f"field '{col}' must be a list of at least two messages")
    messages, flags = [], []
    for i, item in enumerate(raw):
        message, flag = _message(record, f"field '{col}[{i}]'", item)
        messages.append(message)
        flags.append(flag)
    if messages[-1]["role"] != "assistant":
        raise BadRecord(record.where, f"field '{col}': the last message must be from the assistant")
    if not any(m["role"] == "user" for m in messages):
        raise BadRecord(record.where, f"field '{col}': no user message")
    system = _text_field(record, system_col)
    if system and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
        flags.insert(0, None)
    last = len(messages) - 1
    trained = [m["role"] == "assistant" and (flag if flag is not None else (train_on == "all" or i == last))
               for i, (m, flag) in enumerate(zip(messages, flags))]
    if not any(trained):
        raise BadRecord(record.where, f"field '{col}': every assistant message has weight 0: nothing to train")
    return Conversation(messages, trained, _tools(record, tools_col))


def _message(record, where: str, item) -> tuple[dict, bool | None]:
    if not isinstance(item, dict):
        raise BadRecord(record.where, f"{where} must be an object with role and content (or from and value)")
    sharegpt = "role" not in item and "from" in item
    if sharegpt:
        source, content, key = item.get("from"), item.get("value"), "value"
        if source not in SHAREGPT_ROLES:
            raise BadRecord(record.where, f"{where}.from must be one of {', '.join(SHAREGPT_ROLES)}, got {source!r}")
        role = SHAREGPT_ROLES[source]
        calls = _sharegpt_call(content) if source == "function_call" else None
    else:
        role, content, key = item.get("role"), item.get("content"), "content"
        if "role" not in item:
            raise BadRecord(record.where, f"{where} has neither 'role' (OpenAI messages) nor 'from' (ShareGPT)")
        if role not in ROLES:
            raise BadRecord(record.where, f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        calls = _openai_calls(record, where, item.get("tool_calls")) if role == "assistant" else None
        if content is None and calls:
            content = ""
    if not isinstance(content, str):
        raise BadRecord(record.where, f"{where}.{key} must be text, got {type(content).__name__}")
    if not content.strip() and not calls:
        raise BadRecord(record.where, f"{where}.{key} is empty")
    message = {"role": role, "content": content}
    message.update({k: item[k] for k in PASS_KEYS if isinstance(item.get(k), str)})
    if calls:
        # As text (templates without tool calls): ShareGPT's call exactly as written; OpenAI's
        # content, then each call as one JSON object per line. `_content` is what a template that
        # writes the calls itself gets as the message's content.
        text = content if sharegpt else "\n".join(filter(None, [content, *(
            json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]}, ensure_ascii=False)
            for c in calls)]))
        message.update({"content": text, "tool_calls": calls, "_content": "" if sharegpt else content})
    return message, _train_flag(record, where, item, role)


def _train_flag(record, where: str, item: dict, role: str) -> bool | None:
    """A message's own choice: weight 0|1 or train true|false; None when it has neither."""
    flag = None
    if item.get("weight") is not None:
        weight = item["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight not in (0, 1):
            raise BadRecord(record.where, f"{where}.weight must be 0 or 1 (a turn is trained or not), got {weight!r}")
        flag = weight == 1
    if item.get("train") is not None:
        if not isinstance(item["train"], bool):
            raise BadRecord(record.where, f"{where}.train must be true or false, got {item['train']!r}")
        if flag is not None and flag != item["train"]:
            raise BadRecord(record.where, f"{where}: weight and train disagree")
        flag = item["train"]
    if flag and role != "assistant":
        raise BadRecord(record.where, f"{where}: only assistant messages can be trained (role {role})")
    return flag


def _openai_calls(record, where: str, calls) -> list[dict] | None:
    if not calls:
        return None
    if not isinstance(calls, list):
        raise BadRecord(record.where, f"{where}.tool_calls must be a list")
    out = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise BadRecord(record.where, f"{where}.tool_calls[{j}] needs function.name")
        out.append({**call, "type": call.get("type", "function"),
                    "function": {**function, "arguments": _arguments(function.get("arguments"))}})
    return out


def _sharegpt_call(value) -> list[dict] | None:
    """A function_call value as OpenAI tool_calls, or None when it is not `{"name", "arguments"}`
    JSON (it is then trained as the text it is)."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    calls = parsed if isinstance(parsed, list) else [parsed]
    if not calls or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        return None
    return [{"type": "function", "function": {"name": c["name"], "arguments": _arguments(c.get("arguments"))}}
            for c in calls]


def _arguments(value):
    # templates write arguments with `tojson`: a JSON string becomes the object it encodes
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return {} if value is None else value


def _text_field(record, col: str | None) -> str | None:
    value = record.data.get(col) if col else None
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise BadRecord(record.where, f"field '{col}' must be text, got {type(value).__name__}")
    return value


def _tools(record, col: str | None) -> list[dict] | None:
    """Tool schemas: a list of objects, or the JSON text of one (ShareGPT stores them as text)."""
    value = record.data.get(col) if col else None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise BadRecord(record.where, f"field '{col}' is not valid JSON: {exc}") from None
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise BadRecord(record.where, f"field '{col}' must be a list of tool schemas (objects)")
    return value
