"""BLEU: differential tests against sacrebleu 2.x on seeded random corpora (exact float equality)."""

from __future__ import annotations

import random

import pytest
import sacrebleu
from sacrebleu.metrics.bleu import BLEU, _get_tokenizer

from tunelab.metrics.bleu import corpus_bleu, score_from_statistics, segment_statistics, sentence_bleu
from tunelab.metrics.bleu_tokenizers import TOKENIZERS
from tunelab.metrics.errors import MetricInputError

SMOOTHINGS = [("exp", None), ("floor", None), ("floor", 0.3), ("add-k", None), ("add-k", 2), ("none", None)]


def _strip_impl(signature: str) -> str:
    return "|".join(p for p in signature.split("|") if not p.startswith("impl:"))


def _same(ours, theirs):
    assert ours.score == theirs.score
    assert ours.precisions == theirs.precisions
    assert ours.bp == theirs.bp
    assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
    assert ours.counts == theirs.counts and ours.totals == theirs.totals


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_tokenizers_identical_to_sacrebleu(name, corpus_tools):
    random_text = corpus_tools.random_text
    rng = random.Random(7)
    theirs = _get_tokenizer(name)()
    texts = [random_text(rng) for _ in range(4000)]
    # punctuation/digit soup: where 13a's non-overlapping period/comma/dash rules bite
    texts += ["".join(rng.choice("a1.,-\"'() &;x9\n") for _ in range(rng.randint(0, 25))) for _ in range(4000)]
    for text in texts:
        assert TOKENIZERS[name](text.rstrip()) == theirs(text.rstrip()), repr(text)


@pytest.mark.parametrize("tokenize", sorted(TOKENIZERS))
def test_corpus_bleu_identical(random_corpus, tokenize, corpus_tools):
    # all 2,500 records for 13a; 600 for the others (char makes ~5x more n-grams)
    records = random_corpus if tokenize == "13a" else random_corpus[:600]
    hyps = [h for h, _ in records]
    refs = [r for _, r in records]
    streams = corpus_tools.to_streams(refs)
    configs = [("exp", None, False, False), ("floor" if tokenize != "13a" else "add-k", None, True, True)]
    for smooth, value, lowercase, effective in configs:
        ours = corpus_bleu(
            hyps, refs, tokenize=tokenize, smooth_method=smooth, smooth_value=value,
            lowercase=lowercase, effective_order=effective,
        )
        metric = BLEU(tokenize=tokenize, smooth_method=smooth, smooth_value=value,
                      lowercase=lowercase, effective_order=effective)
        theirs = metric.corpus_score(hyps, streams)
        _same(ours, theirs)
        assert 0 < ours.score < 100
        assert _strip_impl(ours.signature) == str(metric.get_signature())
        assert "|impl:tunelab-" in ours.signature


def test_segment_statistics_and_every_smoothing_identical(random_corpus, corpus_tools):
    hyps = [h for h, _ in random_corpus]
    refs = [r for _, r in random_corpus]
    stats, _ = segment_statistics(hyps, refs)
    theirs_stats = BLEU()._extract_corpus_statistics(hyps, corpus_tools.to_streams(refs))
    assert stats == theirs_stats
    # a low-match corpus, where smoothing and effective order decide the score
    few = stats[:3]
    for rows in (stats, few):
        summed = [sum(column) for column in zip(*rows)]
        for smooth, value in SMOOTHINGS:
            for effective in (False, True):
                ours = score_from_statistics(summed, smooth_method=smooth, smooth_value=value,
                                             effective_order=effective)
                metric = BLEU(smooth_method=smooth, smooth_value=value, effective_order=effective)
                _same(ours, metric._compute_score_from_stats(list(summed)))


def test_sentence_bleu_identical(random_corpus):
    for i, (hyp, refs) in enumerate(random_corpus):
        smooth, value = SMOOTHINGS[i % len(SMOOTHINGS)]
        tokenize = ["13a", "intl", "char", "none"][i % 4] if i % 5 else "13a"
        kwargs = dict(smooth_method=smooth, smooth_value=value, tokenize=tokenize)
        present = [r for r in refs]
        ours = sentence_bleu(hyp, present, **kwargs)
        theirs = sacrebleu.sentence_bleu(hyp, present, **kwargs)
        _same(ours, theirs)


def test_single_reference_stream_and_variable_nrefs():
    hyps = ["the cat sat on the mat", "a dog"]
    one = corpus_bleu(hyps, [["the cat sat on a mat"], ["a dog ran"]])
    assert one.signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|impl:tunelab-")
    assert one.signature.endswith(f"|version:{sacrebleu.__version__}")
    var = corpus_bleu(hyps, [["the cat sat on a mat", "the cat"], ["a dog ran"]])
    assert var.signature.startswith("nrefs:var|")
    floor = corpus_bleu(hyps, [["x"], ["y"]], smooth_method="floor")
    assert "|smooth:floor[0.10]|" in floor.signature


def test_missing_and_empty_references_differ_like_sacrebleu():
    hyp = "the cat sat on the mat today"
    with_missing = sentence_bleu(hyp, ["the cat sat on the mat", None])
    with_empty = sentence_bleu(hyp, ["the cat sat on the mat", ""])
    assert with_missing.score == sacrebleu.sentence_bleu(hyp, ["the cat sat on the mat", None]).score
    assert with_empty.score == sacrebleu.sentence_bleu(hyp, ["the cat sat on the mat", ""]).score
    # the missing one is ignored: closest length 6 (and nrefs:1); the empty one counts as a
    # length-0 reference but 6 is still closer to 7, so only nrefs differs here...
    assert with_missing.signature.startswith("nrefs:1|") and with_empty.signature.startswith("nrefs:2|")
    # ...while for a short hypothesis the empty reference is the closest length: BP = 1
    short = sentence_bleu("cat", ["the cat sat on the mat", ""])
    assert short.ref_len == 0 and short.bp == 1.0
    assert sentence_bleu("cat", ["the cat sat on the mat", None]).ref_len == 6


def test_empty_hypothesis_and_reference_score_zero():
    assert corpus_bleu([""], [[""]]).score == 0.0
    assert sentence_bleu("", ["a b c"]).score == 0.0
    assert sentence_bleu("a b c", [""]).score == 0.0


def test_bad_input_is_a_clear_error():
    with pytest.raises(MetricInputError, match="record 1: no reference"):
        corpus_bleu(["a", "b"], [["a"], [None]])
    with pytest.raises(MetricInputError, match="2 hypotheses but 1"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(MetricInputError, match="unknown BLEU tokenizer"):
        corpus_bleu(["a"], [["a"]], tokenize="moses")
    with pytest.raises(MetricInputError, match="unknown BLEU smoothing"):
        corpus_bleu(["a"], [["a"]], smooth_method="lin")
    with pytest.raises(MetricInputError, match="record 0: hypothesis must be a string"):
        corpus_bleu([None], [["a"]])
    with pytest.raises(MetricInputError, match="not one string"):
        sentence_bleu("a", "a")


def test_larger_seeded_corpus_three_references(corpus_tools):
    to_streams = corpus_tools.to_streams
    records = corpus_tools.random_records(seed=99, n=2000, max_refs=3)
    hyps = [h for h, _ in records]
    refs = [r for _, r in records]
    _same(corpus_bleu(hyps, refs), sacrebleu.corpus_bleu(hyps, to_streams(refs)))


def test_vectorised_and_dict_counting_agree(random_corpus, monkeypatch):
    import tunelab.metrics.bleu as bleu_module

    hyps = [h for h, _ in random_corpus[:800]]
    refs = [r for _, r in random_corpus[:800]]
    edge = [("", [""]), ("", ["a b"]), ("a a a a a", ["a a", None, "a a a"]), ("x", ["", ""])]
    for tokenize in ("13a", "char"):
        monkeypatch.setattr(bleu_module, "VECTORISE_FROM", 1)
        vectorised = segment_statistics(hyps, refs, tokenize=tokenize)
        tiny = [segment_statistics([h], [r]) for h, r in edge]
        monkeypatch.setattr(bleu_module, "VECTORISE_FROM", 10**9)
        assert segment_statistics(hyps, refs, tokenize=tokenize) == vectorised
        assert [segment_statistics([h], [r]) for h, r in edge] == tiny
