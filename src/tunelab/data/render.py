"""Prompts as the model sees them: the tokenizer's chat template, or a plain format without one.

User templates are Jinja rendered in an immutable sandbox: a config file must not run code.
"""

from __future__ import annotations

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tunelab.data.errors import BadRecord, DataError

_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                     autoescape=False)
_SENTINEL = "Zq7xW3tunelabAnswer"


def compile_template(text: str, what: str) -> jinja2.Template:
    try:
        return _ENV.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise DataError(f"{what}: template syntax error on line {exc.lineno}: {exc.message}") from None


def render_template(template: jinja2.Template, variables: dict, record, what: str, allow_empty: bool = False) -> str:
    try:
        text = template.render(**variables)
    except jinja2.UndefinedError as exc:
        raise BadRecord(record.where, f"{what}: {exc.message} (variables: {', '.join(sorted(variables))})") from None
    except jinja2.exceptions.SecurityError as exc:
        raise DataError(f"{what}: not allowed in a sandboxed template: {exc}") from None
    except jinja2.TemplateError as exc:
        raise BadRecord(record.where, f"{what}: {exc}") from None
    if not text.strip() and not allow_empty:
        raise BadRecord(record.where, f"{what}: the template rendered an empty message")
    return text


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def end_of_turn(tokenizer, use_chat: bool, template: str | None = None, chosen: str | None = None) -> tuple[int, bool]:
    """(token, written by the template?): the token that ends the assistant's answer, what the chat
    template puts right after it (`<|im_end|>` for SmolLM2, `<|eot_id|>` for Llama 3), else the
    tokenizer's EOS (added after the answer: the template writes no special token there).

    `template`: a chosen template's text (None: the tokenizer's own); `chosen` names it. A chosen
    template that ends answers with a marker the tokenizer has no special token for is refused:
    the marker would be trained as ordinary text pieces."""
    if use_chat:
        messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _SENTINEL}]
        after = ""
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=template)
            after = text.split(_SENTINEL, 1)[1]
            ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
            if ids and ids[0] in set(tokenizer.all_special_ids):
                return ids[0], True
        except Exception:  # templates that refuse this probe fall back to EOS  # noqa: BLE001
            pass
        if chosen and after.strip():
            raise DataError(f"data.chat_template {chosen}: answers end with {after.strip()[:40]!r}, which is not "
                            f"a special token of this tokenizer (it would be trained as plain text); choose a "
                            f"template the tokenizer was made for, or one that ends answers with EOS "
                            f"(mistral, alpaca, plain)")
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no EOS token to end answers with; set tokenizer.eos_token")
    return tokenizer.eos_token_id, False


def build_messages(system: str | None, shots: list[tuple[str, str]], history: list[dict] | None,
                   user: str) -> list[dict]:
    """System prompt, few-shot turns, earlier chat turns, then the user message to answer."""
    messages = []
    history = list(history or [])
    if history and history[0]["role"] == "system":
        messages.append(history.pop(0))
    elif system:
        messages.append({"role": "system", "content": system})
    for shot_user, shot_answer in shots:
        messages.append({"role": "user", "content": shot_user})
        messages.append({"role": "assistant", "content": shot_answer})
    messages.extend(history)
    messages.append({"role": "user", "content": user})
    return messages


def plain_prompt(messages: list[dict], separator: str = "\n", *, verbatim_system: bool = False,
                 shot_delimiter: str = "\n\n") -> str:
    """Plain format for tokenizers without a chat template: system, turns, then the last user
    message followed by `separator` (none for raw prompt/completion data, or with a target
    delimiter, where the answer itself starts with it).

    The system prompt is followed by a blank line, or written as is with `verbatim_system`
    (lm-eval's description, which ends in its own blank line); each earlier answer is followed by
    `shot_delimiter` (lm-eval's fewshot_delimiter)."""
    out = []
    for message in messages:
        content = message["content"]
        if message["role"] == "system":
            out.append(content if verbatim_system else content + "\n\n")
        elif message["role"] == "assistant":
            out.append(content + shot_delimiter)
        else:
            out.append(content if (not separator or content[-1:].isspace()) else content + separator)
    return "".join(out)
