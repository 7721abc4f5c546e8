"""ROUGE mode "rouge-score": differential tests against Google's rouge-score 0.1.2, plus the
Porter stemmer port against NLTK, the unicode tokenizer, edge cases and input errors."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
from rouge_refs import random_corpus, rouge_score_reference

from tunelab.metrics.rouge import Score, rouge
from tunelab.metrics.rouge.stemmer import _stem_uncached

TYPES = ["rouge1", "rouge2", "rouge3", "rouge4", "rouge9", "rougeL", "rougeLsum"]


def _assert_identical(preds, refs, got, expected, types):
    worst, where = 0.0, None
    for i, (g, e) in enumerate(zip(got, expected)):
        for t in types:
            for a, b in zip(g[t], e[t]):
                if abs(a - b) > worst:
                    worst, where = abs(a - b), (i, t, g[t], e[t], preds[i], refs[i])
    assert worst <= 1e-12, f"max |diff| {worst} at {where}"


@pytest.mark.parametrize("use_stemmer", [False, True])
def test_identical_to_rouge_score(use_stemmer):
    preds, refs = random_corpus(seed=11 + use_stemmer, n=1100, max_len=30)
    got = rouge(preds, refs, TYPES, use_stemmer=use_stemmer)
    expected = rouge_score_reference(preds, refs, TYPES, use_stemmer)
    assert len(got) == len(preds)
    _assert_identical(preds, refs, got, expected, TYPES)
    # The corpus really exercises the scorer: many partial and some perfect matches.
    f1 = [g["rouge1"].fmeasure for g in got]
    assert sum(0 < f < 1 for f in f1) > 500 and sum(f == 1 for f in f1) > 10


def test_identical_to_rouge_score_long_multiline_texts():
    """Texts of up to 160 tokens: bit vectors of several 64-bit words, many sentences."""
    preds, refs = random_corpus(seed=5, n=120, max_len=160, max_refs=2)
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    got = rouge(preds, refs, types, use_stemmer=True)
    _assert_identical(preds, refs, got, rouge_score_reference(preds, refs, types, True), types)


def test_stemmer_port_matches_nltk():
    from nltk.stem.porter import PorterStemmer

    nltk_stem = PorterStemmer().stem
    rng = random.Random(0)
    letters = "aeiouybcdlmnrstgyy"
    suffixes = ["", "s", "ies", "ied", "eed", "ing", "ed", "alli", "logi", "ational", "ization",
                "fulness", "ement", "ion", "ll", "e", "y", "bli", "sses", "ness", "iveness"]
    words = {"sky", "skies", "dying", "news", "innings", "generalization", "running", "caresses",
             "ponies", "feed", "agreed", "hopping", "controlling", "happy", "y", "yy", "ys"}
    for _ in range(20000):
        stem = "".join(rng.choice(letters) for _ in range(rng.randint(0, 8)))
        words.add(stem + rng.choice(suffixes))
    bad = [w for w in words if w and _stem_uncached(w) != nltk_stem(w)]
    assert not bad, bad[:10]


def test_single_string_reference_and_record_without_references():
    out = rouge(["the cat sat", "x"], ["the cat sat on the mat", []], ["rouge1", "rougeL"])
    assert out[0]["rouge1"] == Score(1.0, 0.5, 2 * 0.5 / 1.5)
    assert out[1] == {"rouge1": Score(0.0, 0.0, 0.0), "rougeL": Score(0.0, 0.0, 0.0)}


@pytest.mark.parametrize("pred,ref", [("", ""), ("", "a b"), ("a b", ""), ("...", "!!"), ("\n\n", " ")])
def test_empty_texts_score_zero(pred, ref):
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum", "rougeW-1.2", "rougeS4", "rougeSU*"]
    out = rouge([pred], [[ref]], types)[0]
    assert all(out[t] == (0.0, 0.0, 0.0) for t in types)


def test_unicode_tokenizer_scores_non_latin_text():
    preds = ["Привет, мир! Данные.", "東京は日本の首都です", "café naïve", "the cat"]
    refs = [["привет мир данные"], ["日本の首都は東京"], ["cafe\u0301 naive"], ["the cat"]]
    default = rouge(preds, refs, ["rouge1"])
    uni = rouge(preds, refs, ["rouge1", "rouge2"], tokenizer="unicode")
    assert [d["rouge1"].fmeasure for d in default[:2]] == [0.0, 0.0]  # dropped by the reference
    assert uni[0]["rouge1"].fmeasure == 1.0  # case-insensitive Cyrillic
    # CJK: one token per character (kana too); all 8 reference characters occur in the 10.
    assert uni[1]["rouge1"].recall == 1.0 and uni[1]["rouge1"].precision == 0.8
    assert uni[1]["rouge2"].recall < 1.0  # order differs
    assert uni[2]["rouge1"].recall == 0.5  # NFC: composed and decomposed café are the same token
    assert uni[3]["rouge1"] == default[3]["rouge1"]  # ASCII: same as the default tokenizer


def test_w_s_su_types_follow_rouge155_formulas():
    # Skip-bigrams of "a b c d" with gap <= 1: ab ac bc bd cd (5); of "a c d": ac ad cd (3).
    out = rouge(["a c d"], [["a b c d"]], ["rougeS1", "rougeSU1", "rougeS*", "rougeW-1.2"])[0]
    assert out["rougeS1"].recall == 2 / 5 and out["rougeS1"].precision == 2 / 3
    # SU adds the unigrams of all tokens but the last (ROUGE-1.5.5's count): a b c | a c.
    assert out["rougeSU1"].recall == 4 / 8 and out["rougeSU1"].precision == 4 / 5
    assert out["rougeS*"].recall == 3 / 6 and out["rougeS*"].precision == 3 / 3
    # WLCS: runs "a" and "c d" -> hit 1 + 2**1.2; base (4**1.2)**1.2 as the perl script weights it.
    hit = 1 + 2**1.2
    assert out["rougeW-1.2"].recall == pytest.approx((hit / (4**1.2) ** 1.2) ** (1 / 1.2))
    assert out["rougeW-1.2"].precision == pytest.approx((hit / 3**1.2) ** (1 / 1.2))


def test_invalid_inputs():
    with pytest.raises(ValueError, match="invalid ROUGE type"):
        rouge(["a"], [["a"]], ["rougeX"])
    with pytest.raises(ValueError, match="predictions but"):
        rouge(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="tokenizer"):
        rouge(["a"], [["a"]], tokenizer="spacy")
    with pytest.raises(ValueError, match="mode"):
        rouge(["a"], [["a"]], mode="rouge2")


def test_metrics_import_does_not_load_torch():
    code = (
        "import sys, tunelab.metrics.rouge as r; r.rouge(['a b'], [['a']], ['rouge1', 'rougeW-1.2']);"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules;"
        "assert 'nltk' not in sys.modules and 'rouge_score' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
