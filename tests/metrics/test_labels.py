"""Label extraction from free-form generations: rules, ambiguity, unmapped counts."""

from __future__ import annotations

import pytest

from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.labels import explain_label, extract_label, extract_labels, normalize_text

LABELS = ["positive", "negative"]


@pytest.mark.parametrize(
    "text,label,reason",
    [
        ("positive", "positive", "exact"),
        ("  Positive.\n", "positive", "exact"),
        ("NEGATIVE!", "negative", "exact"),
        ("Negative. The reviewer hated it.", "negative", "mention"),
        ("Positive and negative aspects balance out.", None, "ambiguous"),
        ("I think this review is positive.", "positive", "mention"),
        ("The sentiment is clearly negative", "negative", "mention"),
        ("It could be positive or negative.", None, "ambiguous"),
        ("I cannot tell.", None, "no_match"),
        ("", None, "no_match"),
        ("positively great", None, "no_match"),  # whole words only
    ],
)
def test_rules(text, label, reason):
    assert explain_label(text, LABELS) == (label, reason)


def test_first_mention_rule_is_opt_in():
    text = "It is positive rather than negative."
    assert extract_label(text, LABELS) is None
    assert explain_label(text, LABELS, rule="first") == ("positive", "first")


def test_verbalizers_accents_and_multiword_labels():
    labels = {"entailment": ["yes", "true"], "contradiction": ["no", "false"], "neutral": ["maybe"]}
    assert extract_label("Yes, it follows.", labels) == "entailment"
    assert extract_label("I don't know", labels) is None  # "no" is not a word in "know"
    assert extract_label("The answer: FALSE", labels) == "contradiction"
    topics = ["Business", "Small Business", "Sci/Tech"]
    assert extract_label("this is about small business loans", topics) == "Small Business"
    assert extract_label("sci-tech", topics) == "Sci/Tech"
    assert extract_label("Café", ["cafe", "bar"]) == "cafe"
    assert normalize_text("  Ça  va?\tOUI ") == "ca va oui"
    assert extract_label("Это положительный отзыв", ["положительный", "отрицательный"]) == "положительный"


def test_counts_report_unmapped():
    texts = ["positive", "Sure! It's negative.", "hmm", "positive and negative", "Negative"]
    mapped, counts = extract_labels(texts, LABELS)
    assert mapped == ["positive", "negative", None, None, "negative"]
    assert counts["n"] == 5 and counts["unmapped"] == 2 and counts["mapped"] == 3
    assert counts["by_reason"]["ambiguous"] == 1 and counts["by_reason"]["no_match"] == 1


def test_bad_label_sets():
    with pytest.raises(MetricInputError, match="maps to both"):
        extract_label("x", {"a": ["yes"], "b": ["Yes!"]})
    with pytest.raises(MetricInputError, match="empty after normalisation"):
        extract_label("x", ["?!"])
    with pytest.raises(MetricInputError, match="unknown label rule"):
        extract_label("x", LABELS, rule="last")
