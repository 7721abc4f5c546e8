"""Exact assistant spans in a rendered conversation, whatever the chat template.

A conversation is rendered once whole (F), and once up to each trained assistant turn with the
generation prompt (P_k). F must start with P_k: the answer then starts at len(P_k), exactly where
generation would start, and ends where the template writes its end-of-turn token (`<|im_end|>`,
`<|eot_id|>`, `<end_of_turn>`, EOS) after it. The text is cut into segments at those places and
each segment is tokenised on its own, so no token straddles a boundary: the trained tokens are
exactly each answer and its end-of-turn token, never a role header, a user or a tool turn.
Templates that render an earlier turn differently once later turns follow cannot be masked this
way and are refused with the record named, never masked approximately.
"""

from __future__ import annotations

import json

import jinja2

from tunelab.data.errors import BadRecord, DataError
from tunelab.data.render import end_of_turn, plain_prompt
from tunelab.data.templates import digest, template_code

# Templates that know nothing of tools get them in the system message, as this text.
TOOLS_PROMPT = ("You have access to the following tools (JSON schemas):\n{tools}\n"
                "To call a tool, answer with a JSON object {{\"name\": ..., \"arguments\": {{...}}}}.")


class ChatFormat:
    """How one task's messages become text: a chat template (chosen, or the tokenizer's own) or
    tunelab's plain format, and the token that ends every answer."""

    def __init__(self, tokenizer, use_chat: bool, template: str | None = None, chosen: str | None = None, *,
                 separator: str = "\n", verbatim_system: bool = False, shot_delimiter: str = "\n\n"):
        self.tokenizer, self.use_chat, self.template, self.chosen = tokenizer, use_chat, template, chosen
        self.separator, self.verbatim_system, self.shot_delimiter = separator, verbatim_system, shot_delimiter
        code = template_code(tokenizer, template) if use_chat else ""
        # A template that reads `tools` / `tool_calls` writes them its own way; others get text.
        self.supports_tools = "tools" in code
        self.supports_tool_calls = "tool_calls" in code
        self.eot_id, self.eot_in_text = end_of_turn(tokenizer, use_chat, template, chosen)
        self.eot_text = tokenizer.decode([self.eot_id], skip_special_tokens=False)
        self.source_digest = digest(code and (template or tokenizer.get_chat_template()))

    def render(self, messages: list[dict], generation: bool, tools: list | None = None) -> str:
        if not self.use_chat:
            return plain_prompt(messages, self.separator, verbatim_system=self.verbatim_system,
                                shot_delimiter=self.shot_delimiter)
        try:
            return self.tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                                      add_generation_prompt=generation, chat_template=self.template)
        except jinja2.exceptions.SecurityError as exc:
            raise DataError(f"chat template: not allowed in a sandboxed template: {exc}") from None

    def prepare(self, messages: list[dict], tools: list | None) -> tuple[list[dict], list | None, int]:
        """Messages as this template takes them, the tools argument, and how many messages were
        inserted in front (a system message that carries the tools as text)."""
        out = []
        for m in messages:
            m = dict(m)
            own = m.pop("_content", None)
            if "tool_calls" in m and self.supports_tool_calls:
                m["content"] = own
            else:
                m.pop("tool_calls", None)
            out.append(m)
        if not tools or self.supports_tools:
            return out, tools, 0
        text = TOOLS_PROMPT.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{text}"
            return out, None, 0
        return [{"role": "system", "content": text}, *out], None, 1

    def describe(self, requested: bool) -> dict:
        """What results files say about the prompt format (like lm-eval's apply_chat_template)."""
        return {"applied": self.use_chat, "requested": requested,
                "template": (self.chosen or "tokenizer") if self.use_chat else None,
                "sha256": self.source_digest if self.use_chat else None, "end_of_turn": self.eot_text}


def conversation_segments(fmt: ChatFormat, messages: list[dict], trained: list[bool], tools, where: str
                          ) -> list[tuple[str, bool, bool]]:
    """(text, is an answer, is trained) segments of a conversation that ends with an assistant
    turn; every answer segment is followed by the end-of-turn token (added at the token level).
    The last segment is the final answer (the evaluation target), trained or not; the template's
    text after the final end-of-turn token (e.g. a newline) is not part of the example."""
    prepared, tools, shift = fmt.prepare(messages, tools)
    last = len(messages) - 1
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant" and (trained[i] or i == last)]
    try:
        full = fmt.render(prepared, generation=False, tools=tools)
        out, pos = [], 0
        for i in answers:
            head = fmt.render(prepared[:i + shift], generation=True, tools=tools)
            if len(head) < pos or not full.startswith(head):
                raise BadRecord(where, f"message {i}: the chat template renders the conversation before this "
                                       f"assistant turn differently once the turn follows, so its tokens cannot "
                                       f"be masked exactly; train the final turn only (train_on: last) or choose "
                                       f"another template (data.chat_template)")
            answer, end = _answer(fmt, full, len(head), prepared[i + shift], where, i)
            out.append((full[pos:len(head)], False, False))
            out.append((answer, True, trained[i]))
            pos = end
        return out
    except jinja2.TemplateError as exc:
        raise BadRecord(where, f"chat template: {exc}") from None


def _answer(fmt: ChatFormat, full: str, start: int, message: dict, where: str, i: int) -> tuple[str, int]:
    """The answer's text from `start`, and where the text after its end-of-turn token begins."""
    if fmt.eot_in_text:  # the template writes the end-of-turn token: the answer ends right before it
        end = full.find(fmt.eot_text, start)
        if end < 0:
            raise BadRecord(where, f"message {i}: the chat template writes no {fmt.eot_text} after this answer")
        answer, after = full[start:end], end + len(fmt.eot_text)
    else:  # plain format (or a template without one): EOS follows the answer as it is written
        content = message["content"] or ""
        if not full.startswith(content, start):
            raise BadRecord(where, f"message {i}: the answer is not written as it is by the template, and no "
                                   f"end-of-turn token marks where it ends")
        answer, after = content, start + len(content)
    # An answer that does not hold its own message (e.g. a template that drops some field) would
    # train on the wrong text: refuse it.
    content = (message.get("content") or "").strip()
    if content and content not in answer:
        raise BadRecord(where, f"message {i}: the chat template does not write this assistant message where "
                               f"its turn starts; its tokens cannot be masked exactly")
    return answer, after
