"""Batched tokenisation and the over-length policy (never silent).

The prompt (rendered with the generation prompt) and each answer are tokenised separately and
concatenated, every answer ending with the end-of-turn token (data/build.py, data/conversation.py):
generation at evaluation time then starts exactly where the trained answer started. Batched
through the fast tokenizer.
"""

from __future__ import annotations

import contextlib
import os

IGNORE_INDEX = -100


@contextlib.contextmanager
def tokenizer_threads(num_proc: int | None):
    """Let the fast tokenizer's batch calls use every core (num_proc None or > 1) for the block.
    The CLI turns its threads off (cli/quiet.py: TOKENIZERS_PARALLELISM=false, so that a fork
    after tokenising does not warn); the Rust library reads the variable at each call."""
    from tunelab.config.env import usable_cpus

    n = num_proc if num_proc is not None else usable_cpus()
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if n > 1 else "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def encode_batch(tokenizer, texts: list[str], batch_size: int = 1024) -> list[list[int]]:
    ids: list[list[int]] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        ids.extend(tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return ids


def bos_prefix(tokenizer, use_chat: bool) -> list[int]:
    """Plain-format prompts get the BOS the tokenizer would add itself (chat templates write it)."""
    if use_chat or tokenizer.bos_token_id is None:
        return []
    ids = tokenizer("a")["input_ids"]
    return [tokenizer.bos_token_id] if ids and ids[0] == tokenizer.bos_token_id else []


def apply_length_policy(prompt_ids: list[int], target_ids: list[int], max_length: int,
                        policy: str) -> tuple[list[int] | None, bool, str | None]:
    """(kept prompt ids or None if rejected, truncated?, reason for rejection)."""
    total = len(prompt_ids) + len(target_ids)
    if total <= max_length:
        return prompt_ids, False, None
    if policy == "reject":
        return None, False, f"{total} tokens > max_length {max_length}"
    room = max_length - len(target_ids)
    if room < 1:
        return None, False, f"the answer alone has {len(target_ids)} tokens (max_length {max_length})"
    return prompt_ids[-room:], True, None
