"""Token F1, SQuAD v1.1 style: F1 of the bag of normalised tokens, max over references.

Tokens are the whitespace-split output of exact_match.normalize_answer (lowercase, no
punctuation, no articles). As in SQuAD v1.1's script, no overlapping token gives 0.0 - also when
both sides are empty (SQuAD v2's script would give 1.0 there). No reference at all scores 0.0.
"""

from __future__ import annotations

from collections import Counter

from tunelab.metrics.exact_match import _check, normalize_answer


def _f1(prediction_tokens: list[str], reference_tokens: list[str]) -> float:
    common = Counter(prediction_tokens) & Counter(reference_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(reference_tokens)
    return (2 * precision * recall) / (precision + recall)


def token_f1(prediction: str, references: list[str] | str, normalize: bool = True) -> float:
    references = _check(prediction, references)
    prepare = normalize_answer if normalize else (lambda text: text)
    prediction_tokens = prepare(prediction).split()
    return max((_f1(prediction_tokens, prepare(r).split()) for r in references), default=0.0)
