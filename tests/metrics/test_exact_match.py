"""Exact match: SQuAD v1.1 normalisation, options, several references."""

from __future__ import annotations

import re
import string

import pytest

from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.exact_match import exact_match, normalize_answer


def squad_v11_normalize_answer(s):
    """Verbatim from SQuAD v1.1's evaluate-v1.1.py (the reference)."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def test_normalisation_identical_to_squad(random_corpus):
    for prediction, refs in random_corpus:
        for text in [prediction, *(r for r in refs if r is not None)]:
            assert normalize_answer(text) == squad_v11_normalize_answer(text)
        present = [r for r in refs if r is not None]
        expected = max(float(squad_v11_normalize_answer(prediction) == squad_v11_normalize_answer(r)) for r in present)
        assert exact_match(prediction, present) == expected


@pytest.mark.parametrize(
    "prediction,references,options,expected",
    [
        ("The Eiffel Tower!", ["eiffel tower"], {}, 1.0),
        ("The Eiffel Tower!", ["eiffel tower"], {"normalize": False}, 0.0),
        ("The  Eiffel Tower", ["the eiffel tower"], {"remove_articles": False}, 1.0),
        ("Eiffel Tower", ["the eiffel tower"], {"remove_articles": False}, 0.0),
        ("EIFFEL tower", ["eiffel tower"], {"lowercase": False}, 0.0),
        ("eiffel tower.", ["eiffel tower"], {"strip_punctuation": False}, 0.0),
        ("eiffel  tower", ["eiffel tower"], {"normalize_whitespace": False}, 0.0),
        ("Paris", ["London", "paris."], {}, 1.0),
        ("", ["paris"], {}, 0.0),
        ("paris", [""], {}, 0.0),
        ("paris", [], {}, 0.0),
        ("Paris", "paris", {}, 1.0),
    ],
)
def test_options(prediction, references, options, expected):
    assert exact_match(prediction, references, **options) == expected


def test_bad_input():
    with pytest.raises(MetricInputError, match="prediction must be a string"):
        exact_match(None, ["a"])
    with pytest.raises(MetricInputError, match="references must be strings"):
        exact_match("a", [1])
