"""Leak check: the same input in two of train/validation/test inflates evaluation scores.

Exact duplicates compare the user message as written; normalised duplicates compare it after
Unicode NFKC, case folding, and reducing punctuation and whitespace runs to one space. With
`remove`, test stays intact: validation loses what is in test, train loses what is in either.
"""

from __future__ import annotations

import re
import unicodedata

PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _NON_WORD.sub(" ", text).strip()


def normalised_keys(keys: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every split's keys normalised once (both functions below compare them; sets and one pass
    each: linear in the examples, not quadratic)."""
    return {split: [normalise_text(k) for k in values] for split, values in keys.items()}


def leak_report(keys: dict[str, list[str]],
                normalised: dict[str, list[str]] | None = None) -> dict[str, dict[str, int]]:
    """For each pair `a/b`: how many examples of b have an exact / normalised twin in a."""
    normalised = normalised if normalised is not None else normalised_keys(keys)
    report = {}
    for a, b in PAIRS:
        if not keys.get(a) or not keys.get(b):
            continue
        exact_a = set(keys[a])
        norm_a = set(normalised[a])
        report[f"{a}/{b}"] = {
            "exact": sum(k in exact_a for k in keys[b]),
            "normalised": sum(k in norm_a for k in normalised[b]),
        }
    return report


def leaking_indices(keys: dict[str, list[str]], normalised: dict[str, list[str]] | None = None) -> dict[str, set[int]]:
    """Indices to remove per split so that no normalised input appears in two splits."""
    normalised = normalised if normalised is not None else normalised_keys(keys)
    later = {"train": ("validation", "test"), "validation": ("test",), "test": ()}
    remove: dict[str, set[int]] = {}
    for split, others in later.items():
        seen = {k for other in others for k in normalised.get(other, [])}
        remove[split] = {i for i, k in enumerate(normalised.get(split, [])) if k in seen}
    return remove


# The inputs of each kind's record, without its answer: what makes two examples "the same
# example" whatever instruction, template or chat format wraps them (the contamination guard).
CONTENT_VARIABLES = {
    "classification": ("text", "text_pair"),
    "qa": ("question", "context"),
    "summarization": ("text",),
    "translation": ("text",),
    "multiple_choice": ("question", "choices"),
    "instruction": ("instruction", "input"),
    "completion": ("prompt",),
    "chat": ("user",),
    "preference": ("user",),  # the context (history) and the last user message, as chat
    "kto": ("user",),
}


def content_key(kind: str, parts) -> str:
    """A short hash of an example's normalised input content (see CONTENT_VARIABLES)."""
    import hashlib

    pieces = [m["content"] for m in parts.history or []]
    for name in CONTENT_VARIABLES.get(kind, ()):
        value = parts.variables.get(name)
        if isinstance(value, (list, tuple)):
            pieces.extend(str(v) for v in value)
        elif value is not None:
            pieces.append(str(value))
    if not pieces:  # a kind without declared inputs: the user message as written
        pieces = [parts.user]
    text = normalise_text("\n".join(pieces))
    return hashlib.sha256(f"{kind}\x1f{text}".encode("utf-8")).hexdigest()[:20]
