"""Token F1: identical to SQuAD v1.1's f1_score (max over references)."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest

from tunelab.metrics.token_f1 import token_f1


def _squad_normalize(s):
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def squad_v11_f1(prediction, ground_truth):
    """Verbatim logic of SQuAD v1.1's evaluate-v1.1.py f1_score."""
    prediction_tokens = _squad_normalize(prediction).split()
    ground_truth_tokens = _squad_normalize(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def test_identical_to_squad(random_corpus):
    nonzero = 0
    for prediction, refs in random_corpus:
        present = [r for r in refs if r is not None]
        expected = max(squad_v11_f1(prediction, r) for r in present)
        assert token_f1(prediction, present) == expected
        nonzero += expected > 0
    assert nonzero > len(random_corpus) // 2


def test_examples():
    assert token_f1("the cat sat", ["a cat sat down"]) == pytest.approx(2 * 1.0 * (2 / 3) / (1 + 2 / 3))
    assert token_f1("", [""]) == 0.0  # SQuAD v1.1: no overlap -> 0
    assert token_f1("x", []) == 0.0
    assert token_f1("Paris", ["London", "paris!"]) == 1.0
