"""Talk to a model and run it over a file, with the evaluation engine's generation loop.

`tunelab chat MODEL_OR_RUN` and `tunelab generate MODEL_OR_RUN --input IN.jsonl --output OUT.jsonl`
are thin layers over these functions. Both load a model the way evaluation does (a base model, a
PEFT adapter on it, or a run's final/ with the run's own load options: evaluate/loading.py) and
generate with tunelab.evaluate.generation (the same batched, batch-invariant loop `tunelab eval`
uses), so an answer here is the answer eval scores for the same prompt and settings.

Input records for `generate`: {"messages": [{"role", "content"}, ...]} (rendered with the model's
chat template, generation prompt added), or {"prompt": "..."} (used as it is, or as one user
message with `chat=True`). Every other field is copied to the output line, which adds
"prediction", "stop_reason" and "generated_tokens".
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.base import UserError
from tunelab.config.evaluate import GenerationConfig
from tunelab.evaluate.generation import generate, generate_batch
from tunelab.files import write_jsonl

DEFAULT_NEW_TOKENS = 256


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The chat template over `messages` with the generation prompt, as token ids."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the model's tokenizer has no chat template: use records with a plain 'prompt' "
                        "(generate), or a chat model")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class TextStream:
    """Hands on_text only the new part of a decoded answer, as tokens arrive (whole characters only:
    a token that ends inside a multi-byte character shows up with the next one)."""

    def __init__(self, tokenizer, on_text):
        self.tokenizer, self.on_text, self.shown = tokenizer, on_text, ""

    def __call__(self, row: int, tokens: list[int]) -> None:
        self.show(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def show(self, text: str) -> None:
        if text.startswith(self.shown) and len(text) > len(self.shown) and not text.endswith("\ufffd"):
            self.on_text(text[len(self.shown):])
            self.shown = text


def reply(lm, messages: list[dict], settings: GenerationConfig, on_text=None) -> str:
    """The assistant's next message; on_text(new_text) receives it piece by piece as it is generated."""
    ids = prompt_ids(lm.tokenizer, messages)
    stream = TextStream(lm.tokenizer, on_text) if on_text is not None else None
    out = generate_batch(lm.model, lm.tokenizer, [ids], settings, on_token=stream)[0]
    if stream is not None:
        stream.show(out.text)  # the final text (a stop string may have cut it)
    return out.text


def read_requests(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(row, dict) or not ("messages" in row or isinstance(row.get("prompt"), str)):
            raise UserError(f"{path}:{number}: expected an object with 'messages' (a list) or 'prompt' (text)")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no records (the file is empty)")
    return rows


def generate_file(lm, input_path: str | Path, output_path: str | Path, settings: GenerationConfig,
                  batch_size: int = 8, chat: bool = False, progress=None) -> int:
    """Generate for every record of a JSONL file; writes the output file atomically. Returns the count."""
    rows = read_requests(Path(input_path))
    prompts = []
    for row in rows:
        if "messages" in row:
            prompts.append(prompt_ids(lm.tokenizer, row["messages"]))
        elif chat:
            prompts.append(prompt_ids(lm.tokenizer, [{"role": "user", "content": row["prompt"]}]))
        else:
            prompts.append(lm.tokenizer(row["prompt"], add_special_tokens=True)["input_ids"])
    outs = generate(lm.model, lm.tokenizer, prompts, settings, batch_size, progress=progress)
    write_jsonl(output_path, [{**row, "prediction": o.text, "stop_reason": o.stop_reason,
                               "generated_tokens": len(o.token_ids)} for row, o in zip(rows, outs)])
    return len(rows)
