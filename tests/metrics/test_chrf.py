"""chrF / chrF++: differential tests against sacrebleu's CHRF (exact float equality)."""

from __future__ import annotations

import pytest
from sacrebleu.metrics.chrf import CHRF

from tunelab.metrics.chrf import corpus_chrf, sentence_chrf
from tunelab.metrics.errors import MetricInputError


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(word_order=2),  # chrF++
        dict(word_order=2, lowercase=True, eps_smoothing=True),
        dict(char_order=4, beta=1, whitespace=True),
    ],
)
def test_corpus_chrf_identical(random_corpus, corpus_tools, options):
    records = random_corpus[:2000] if not options else random_corpus[:700]
    hyps = [h for h, _ in records]
    refs = [r for _, r in records]
    ours = corpus_chrf(hyps, refs, **options)
    metric = CHRF(**options)
    theirs = metric.corpus_score(hyps, corpus_tools.to_streams(refs))
    assert ours.score == theirs.score
    assert ours.name == theirs.name
    assert 0 < ours.score < 100
    signature = "|".join(p for p in ours.signature.split("|") if not p.startswith("impl:"))
    assert signature == str(metric.get_signature())


def test_sentence_chrf_identical(random_corpus):
    plain, plus = CHRF(), CHRF(word_order=2)
    for i, (hyp, refs) in enumerate(random_corpus[:600]):
        if i % 2:
            assert sentence_chrf(hyp, refs).score == plain.sentence_score(hyp, refs).score
        else:
            assert sentence_chrf(hyp, refs, word_order=2).score == plus.sentence_score(hyp, refs).score


def test_empty_texts_score_zero_and_bad_input():
    assert sentence_chrf("", ["a cat"]).score == 0.0
    assert sentence_chrf("a cat", [""]).score == 0.0
    assert sentence_chrf("", [""]).score == 0.0
    with pytest.raises(MetricInputError, match="record 0: no reference"):
        corpus_chrf(["a"], [[None]])
