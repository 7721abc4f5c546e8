"""Map free-form generations to class labels, and say how many could not be mapped.

Before fine-tuning a model often answers "I think this review is positive." instead of
"positive". We map such outputs to a label with transparent rules and never guess: an output with
no label, or with several labels and no rule that decides, maps to None, and the caller counts it
(classification_report puts it in its own confusion-matrix column and counts it wrong).

Normalisation (text and verbalizers alike): Unicode NFKC, casefold, accents removed, every
character that is not a letter or digit becomes a space, runs of spaces collapse. Matching is on
whole words ("no" does not match "know").

Each label has verbalizers: the label itself plus optional synonyms
(`{"positive": ["good", "great"], "negative": ["bad"]}`). Rules, in order:
  1. exact      the whole normalised output is a verbalizer -> its label
  2. mention    verbalizers of exactly one label occur anywhere -> that label
  3. first      (only with rule="first") several labels occur -> the first one mentioned
  otherwise None, with reason "no_match" or "ambiguous". There is deliberately no "starts with"
  rule: "Positive and negative aspects..." would be a silent guess.
A verbalizer occurrence inside a longer one of another label ("business" in "small business") is
not counted. A verbalizer shared by two labels is an error.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass

from tunelab.metrics.errors import MetricInputError

RULES = ("unique", "first")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
    text = "".join(ch if ch.isalnum() else " " for ch in text)
    return " ".join(text.split())


@dataclass(frozen=True)
class Verbalizers:
    """Normalised verbalizer -> label, built once per label set."""

    labels: tuple[str, ...]
    to_label: dict[str, str]

    @classmethod
    def build(cls, labels) -> Verbalizers:
        if isinstance(labels, Verbalizers):
            return labels
        mapping = labels if isinstance(labels, dict) else {label: [] for label in labels}
        if not mapping:
            raise MetricInputError("label extraction needs at least one label")
        to_label: dict[str, str] = {}
        for label, synonyms in mapping.items():
            if not isinstance(label, str):
                raise MetricInputError(f"labels must be strings, got {label!r}")
            for verbalizer in [label, *synonyms]:
                key = normalize_text(verbalizer)
                if not key:
                    raise MetricInputError(f"verbalizer {verbalizer!r} of label {label!r} is empty after normalisation")
                if key in to_label and to_label[key] != label:
                    raise MetricInputError(
                        f"verbalizer {verbalizer!r} maps to both {to_label[key]!r} and {label!r}"
                    )
                to_label[key] = label
        return cls(tuple(mapping), to_label)


def _mentions(text: str, verbalizers: Verbalizers) -> list[tuple[int, int, str]]:
    """(start, end, label) of every whole-word verbalizer occurrence, minus ones nested in longer."""
    padded = f" {text} "
    found = []
    for key, label in verbalizers.to_label.items():
        needle = f" {key} "
        start = padded.find(needle)
        while start != -1:
            found.append((start, start + len(key), label))
            start = padded.find(needle, start + 1)
    kept = []
    for s, e, label in found:
        nested = any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) and l2 != label for s2, e2, l2 in found)
        if not nested:
            kept.append((s, e, label))
    return sorted(kept)


def explain_label(text: str, labels, rule: str = "unique") -> tuple[str | None, str]:
    """(label or None, reason): reason is exact, mention, first, no_match or ambiguous."""
    if rule not in RULES:
        raise MetricInputError(f"unknown label rule {rule!r}; choose one of {', '.join(RULES)}")
    if not isinstance(text, str):
        raise MetricInputError(f"prediction must be a string, got {type(text).__name__}")
    verbalizers = Verbalizers.build(labels)
    norm = normalize_text(text)
    if not norm:
        return None, "no_match"
    if norm in verbalizers.to_label:
        return verbalizers.to_label[norm], "exact"
    mentions = _mentions(norm, verbalizers)
    distinct = {label for _, _, label in mentions}
    if not distinct:
        return None, "no_match"
    if len(distinct) == 1:
        return distinct.pop(), "mention"
    if rule == "first":
        return mentions[0][2], "first"
    return None, "ambiguous"


def extract_label(text: str, labels, rule: str = "unique") -> str | None:
    """The label `text` names, or None when it names none or several (see module docstring)."""
    return explain_label(text, labels, rule)[0]


def extract_labels(texts: list[str], labels, rule: str = "unique") -> tuple[list[str | None], dict]:
    """Map every text; also return counts {"n", "mapped", "unmapped", "by_reason": {...}}."""
    verbalizers = Verbalizers.build(labels)
    mapped, reasons = [], Counter()
    for text in texts:
        label, reason = explain_label(text, verbalizers, rule)
        mapped.append(label)
        reasons[reason] += 1
    unmapped = reasons["no_match"] + reasons["ambiguous"]
    counts = {"n": len(texts), "mapped": len(texts) - unmapped, "unmapped": unmapped, "by_reason": dict(reasons)}
    return mapped, counts
