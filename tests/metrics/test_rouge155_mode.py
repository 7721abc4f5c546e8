"""ROUGE mode "rouge155" against the ROUGE-1.5.5 perl script itself (per-record -d lines).

Marked `perl`: they need `bash scripts/setup_rouge155.sh .venv` (CI runs it) and FAIL, not skip,
when perl or its modules are missing, so a broken setup cannot pass silently.
"""

from __future__ import annotations

import re

import pytest
from rouge_refs import WORDS, perl_rouge155, random_corpus

from tunelab.metrics.rouge import rouge
from tunelab.metrics.rouge.rouge155_mode import smart_stopwords

pytestmark = pytest.mark.perl


def _perl_tokens(text: str, stopwords: bool) -> list[str]:
    tokens = re.findall(r"[a-z0-9]+", text.encode("utf-8").lower().decode("utf-8", "replace"))
    return [t for t in tokens if not (stopwords and t in smart_stopwords())]


def _scorable(preds, refs, stopwords):
    """The perl script dies (division by zero in ROUGE-W) on a reference without tokens: keep
    those records out of its batch (test_empty_reference_scores_zero covers them for us)."""
    keep = [i for i, rs in enumerate(refs) if all(_perl_tokens(r, stopwords) for r in rs)]
    return [preds[i] for i in keep], [refs[i] for i in keep]


def _compare(preds, refs, perl_kwargs, our_kwargs, min_types):
    expected, stdout = perl_rouge155(preds, refs, resamples=1, **perl_kwargs)
    types = sorted({"rouge" + name[len("ROUGE-") :] for e in expected for name in e})
    assert len(types) >= min_types, stdout[-2000:]
    got = rouge(preds, refs, types, mode="rouge155", **our_kwargs)
    bad = []
    for i, (e, g) in enumerate(zip(expected, got)):
        assert len(e) == len(types), f"record {i}: perl printed {sorted(e)}"
        for name, (r, p, f) in e.items():
            s = g["rouge" + name[len("ROUGE-") :]]
            if (s.recall, s.precision, s.fmeasure) != (r, p, f):
                bad.append((i, name, (r, p, f), tuple(s), preds[i], refs[i]))
    assert not bad, f"{len(bad)} mismatches, first: {bad[:3]}"
    return got


@pytest.mark.parametrize("multi_ref", ["A", "B"])
@pytest.mark.parametrize("stopwords", [False, True])
def test_identical_to_rouge155(multi_ref, stopwords):
    """ROUGE-1..4, L, W-1.2, S4, SU4; pooled or best references; with and without -s."""
    seed = 100 + 2 * stopwords + (multi_ref == "B")
    preds, refs = _scorable(*random_corpus(seed, 700, max_len=20), stopwords)
    preds, refs = preds[:460], refs[:460]
    assert len(preds) == 460
    got = _compare(
        preds, refs, dict(multi_ref=multi_ref, stopwords=stopwords),
        dict(multi_ref=multi_ref, remove_stopwords=stopwords), min_types=8,
    )
    assert sum(0 < g["rougeW-1.2"].fmeasure < 1 for g in got) > 200


def test_identical_to_rouge155_other_options():
    """alpha (-p), another ROUGE-W weight (-w), unlimited skip distance (-2 -1 -U)."""
    preds, refs = _scorable(*random_corpus(7, 300, max_len=16), False)
    assert len(preds) > 200
    _compare(
        preds, refs, dict(n=2, weight=1.5, skip=-1, alpha=0.3),
        dict(alpha=0.3), min_types=6,
    )


def test_rouge_score_mode_w_s_su_use_rouge155_formulas():
    """On ASCII lowercase text both tokenizers agree, so mode rouge-score's unrounded W/S/SU
    recall and precision round to exactly the perl script's values."""
    vocab = [w for w in WORDS if re.fullmatch(r"[a-z]+", w)]
    preds, refs = _scorable(*random_corpus(8, 200, max_len=20, max_refs=1, vocab=vocab), False)
    expected, _ = perl_rouge155(preds, refs, n=1, resamples=1)
    types = ["rougeW-1.2", "rougeS4", "rougeSU4"]
    got = rouge(preds, refs, types)
    for e, g in zip(expected, got):
        for t in types:
            r, p, _ = e["ROUGE-" + t[len("rouge") :]]
            assert (float(f"{g[t].recall:.5f}"), float(f"{g[t].precision:.5f}")) == (r, p)


def test_empty_reference_scores_zero():
    """The perl script dies on these; we score 0 and keep going."""
    types = ["rouge1", "rouge2", "rougeL", "rougeW-1.2", "rougeSU4"]
    out = rouge(["a b c", "", "the of"], [["..."], ["a b"], ["the of"]], types, mode="rouge155",
                remove_stopwords=True)
    assert all(out[i][t] == (0.0, 0.0, 0.0) for i in range(3) for t in types)


def test_threaded_types_equal_one_thread(monkeypatch):
    """Types computed in a thread pool (several cores) give exactly the one-thread result."""
    import tunelab.metrics.rouge.rouge155_mode as mode

    preds, refs = random_corpus(seed=99, n=600)
    types = ["rouge1", "rouge2", "rouge4", "rougeL", "rougeW-1.2", "rougeS4", "rougeSU4", "rougeS*"]
    monkeypatch.setattr(mode.os, "cpu_count", lambda: 1)
    single = rouge(preds, refs, types, mode="rouge155")
    monkeypatch.setattr(mode.os, "cpu_count", lambda: 4)
    calls = []
    real = mode._pair_stats
    monkeypatch.setattr(mode, "_pair_stats", lambda *a: calls.append(__import__("threading").get_ident()) or real(*a))
    threaded = rouge(preds, refs, types, mode="rouge155")
    assert len(set(calls)) > 1  # really ran on several threads
    assert threaded == single
