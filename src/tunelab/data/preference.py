"""Preference data (kinds `preference` and `kto`): rendered and tokenised with the prompt shared.

A pair is one context and two answers. The context goes through the chat template like a chat
task's (data/conversation.py: the exact span of the final assistant turn), once with the chosen
answer and once with the rejected one; the two renderings must agree on everything before the
answer (they do for any template that renders a prompt independently of the answer, and a record
whose template does not is refused, named). Only the final answer is scored: its tokens and its
end-of-turn token are the labels, every context token is -100.

Length policy (data.max_length, data.overlength): the prompt plus the *longer* answer must fit;
truncate_left cuts the shared prompt from the left, reject drops the pair. Both answers are kept
whole, so the two log-probabilities always cover the answers the annotator compared.

The examples are `PreferenceExample`s: an `Example` of the prompt and the chosen answer (so
everything that reads an Example, the leak check, validation loss, generation, sees the chosen
answer as the reference) plus the rejected answer's ids and text, or, for kto, `desirable`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.config.data import SPLIT_NAMES
from tunelab.data.conversation import conversation_segments
from tunelab.data.errors import BadRecord
from tunelab.data.example import Example
from tunelab.data.leakage import content_key
from tunelab.data.tokenize import IGNORE_INDEX, apply_length_policy, bos_prefix, encode_batch

PREFERENCE_KINDS = ("preference", "kto")


@dataclass
class PreferenceExample(Example):
    rejected_ids: list[int] | None = None  # pairs: the rejected answer's tokens + end-of-turn token
    rejected_text: str | None = None  # pairs: the rejected answer, without the end-of-turn token
    desirable: bool | None = None  # kto: whether the answer (target_ids) is a desirable one
    # Set by training when the reference cannot be the base with an adapter switched off (full
    # fine-tuning): the starting model's summed log-probs of (chosen, rejected) in each layout a
    # micro-batch may take, {"two": ..., "one": ...} (train/preference.py store_reference_logps).
    reference_logps: dict[str, tuple[float, float]] | None = None


def messages_of(parts) -> list[dict]:
    """The conversation to render: the task's system prompt (unless the record has its own) in
    front of the record's turns, the user template's text in place of the last user message."""
    turns = [dict(m) for m in parts.turns]
    turns[parts.user_index]["content"] = parts.user
    if parts.system and turns[0]["role"] != "system":
        turns.insert(0, {"role": "system", "content": parts.system})
    return turns


def preference_segments(fmt, by_split, policy) -> dict[str, list]:
    """Per split, per record: (prompt text, chosen answer text, rejected answer text or None);
    None for a record the chat template cannot render exactly (skip mode)."""
    out = {}
    for s, items in by_split.items():
        out[s] = []
        for record, parts in items:
            try:
                out[s].append(_pair_texts(fmt, record, parts))
            except BadRecord as exc:
                policy.bad(exc)
                out[s].append(None)
    return out


def _pair_texts(fmt, record, parts) -> tuple[str, str, str | None]:
    messages = messages_of(parts)
    trained = [False] * (len(messages) - 1) + [True]
    (prompt, _, _), (chosen, _, _) = conversation_segments(fmt, messages, trained, parts.tools, record.where)
    if parts.rejected is None:
        return prompt, chosen, None
    other = messages[:-1] + [{"role": "assistant", "content": parts.rejected}]
    (prompt_r, _, _), (rejected, _, _) = conversation_segments(fmt, other, trained, parts.tools, record.where)
    if prompt_r != prompt:
        raise BadRecord(record.where, "the chat template renders the context differently before the chosen and the "
                                      "rejected answer, so they cannot share one prompt; choose another template "
                                      "(data.chat_template)")
    return prompt, chosen, rejected


def preference_tokenised(task, fmt, by_split, segments, removed, max_length, overlength):
    """PreferenceExamples per split after the length policy, their counts, the rejected records
    (the same shapes as data/build.py's SFT examples)."""
    tokenizer = fmt.tokenizer
    bos = bos_prefix(tokenizer, fmt.use_chat)
    flat = [(s, i) for s in SPLIT_NAMES for i in range(len(by_split[s]))
            if i not in removed[s] and segments[s][i] is not None]
    texts = [t for s, i in flat for t in segments[s][i] if t is not None]
    ids = iter(encode_batch(tokenizer, texts))
    splits = {s: [] for s in SPLIT_NAMES}
    counts = {s: {"kept": 0, "truncated": 0, "rejected": 0, "duplicates_removed": len(removed[s])}
              for s in SPLIT_NAMES}
    rejected = []
    for s, i in flat:
        record, parts = by_split[s][i]
        prompt_text, chosen_text, rejected_text = segments[s][i]
        p_ids = bos + next(ids)
        c_ids = next(ids) + [fmt.eot_id]
        r_ids = next(ids) + [fmt.eot_id] if rejected_text is not None else None
        longest = c_ids if r_ids is None or len(c_ids) >= len(r_ids) else r_ids
        kept, truncated, reason = apply_length_policy(p_ids, longest, max_length, overlength)
        if kept is None:
            counts[s]["rejected"] += 1
            rejected.append(f"{record.where}: {reason}")
            continue
        counts[s]["kept"] += 1
        counts[s]["truncated"] += int(truncated)
        splits[s].append(PreferenceExample(
            task=task.name, split=s, source_index=record.index,
            prompt_text=tokenizer.decode(kept, skip_special_tokens=False) if truncated else prompt_text,
            target_text=chosen_text, prompt_ids=kept, target_ids=c_ids, input_ids=kept + c_ids,
            label_ids=[IGNORE_INDEX] * len(kept) + c_ids, references=[chosen_text], truncated=truncated,
            source=record.where, user_text=parts.user, content_key=content_key(task.kind, parts),
            rejected_ids=r_ids, rejected_text=rejected_text, desirable=parts.desirable))
    return splits, counts, rejected


def preview_fields(tokenizer, example) -> dict:
    """For `data preview` (data/preview.py): a pair's rejected answer as the exact scored text
    (decoded from its tokens, end-of-turn token included; the prompt is the chosen one's), and a
    kto example's label. Empty for other kinds."""
    out = {}
    if getattr(example, "rejected_ids", None) is not None:
        out["alternatives"] = [["rejected", [[tokenizer.decode(example.rejected_ids, skip_special_tokens=False),
                                              True]]]]
    if getattr(example, "desirable", None) is not None:
        out["desirable"] = example.desirable
    return out
