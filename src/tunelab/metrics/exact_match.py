"""Exact match, SQuAD style: 1.0 if the normalised prediction equals a normalised reference.

Normalisation as SQuAD v1.1's evaluate script (normalize_answer), each step switchable:
lowercase -> strip ASCII punctuation -> remove the articles a/an/the -> collapse whitespace.
`normalize=False` turns all of them off (strict string equality). With several references the
best (max) is taken; no reference at all scores 0.0.
"""

from __future__ import annotations

import re
import string

from tunelab.metrics.errors import MetricInputError

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(
    text: str,
    *,
    lowercase: bool = True,
    strip_punctuation: bool = True,
    remove_articles: bool = True,
    normalize_whitespace: bool = True,
) -> str:
    if lowercase:
        text = text.lower()
    if strip_punctuation:
        text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    if remove_articles:
        text = _ARTICLES.sub(" ", text)
    if normalize_whitespace:
        text = " ".join(text.split())
    return text


def _check(prediction, references) -> list[str]:
    if not isinstance(prediction, str):
        raise MetricInputError(f"prediction must be a string, got {type(prediction).__name__}")
    if isinstance(references, str):
        references = [references]
    references = list(references)
    if not all(isinstance(r, str) for r in references):
        raise MetricInputError("references must be strings")
    return references


def exact_match(
    prediction: str,
    references: list[str] | str,
    normalize: bool = True,
    *,
    lowercase: bool = True,
    strip_punctuation: bool = True,
    remove_articles: bool = True,
    normalize_whitespace: bool = True,
) -> float:
    references = _check(prediction, references)
    if normalize:
        options = dict(lowercase=lowercase, strip_punctuation=strip_punctuation,
                       remove_articles=remove_articles, normalize_whitespace=normalize_whitespace)
        prediction = normalize_answer(prediction, **options)
        references = [normalize_answer(r, **options) for r in references]
    return float(any(prediction == r for r in references))
