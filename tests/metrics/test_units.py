"""The scoring units (metrics/units.py, loglikelihood.py) and the one vocabulary (vocabulary.py):
every unit's corpus function of summed per-record statistics gives the metric's own corpus
number on real predictions, and every reported name has exactly one unit, direction and scale."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunelab.metrics import vocabulary
from tunelab.metrics.base import Bootstrap, Records
from tunelab.metrics.bleu import corpus_bleu
from tunelab.metrics.chrf import corpus_chrf
from tunelab.metrics.classification import classification_report
from tunelab.metrics.exact_match import exact_match
from tunelab.metrics.labels import Verbalizers, extract_label
from tunelab.metrics.loglikelihood import MultipleChoice, Perplexity, Preference
from tunelab.metrics.rouge import rouge
from tunelab.metrics.score import make_units, score_records
from tunelab.metrics.token_f1 import token_f1
from tunelab.metrics.units import UNITS, Bleu, Chrf, Classification, ExactMatch, Rouge, TokenF1


@pytest.fixture(scope="module")
def answers(shared_data):
    """80 real instruction-following outputs with their references."""
    folder = shared_data / "instructions" / "self_instruct_predictions"
    rows = [json.loads(line) for line in (folder / "text-davinci-003_predictions.jsonl").open()][:80]
    return Records([r["response"].strip() for r in rows], [[r["target"]] for r in rows])


def _corpus(unit, key, records):
    return float(unit.corpus_fn(key)(unit.statistics(records).sum(axis=0)[None])[0])


def test_corpus_statistic_units_equal_their_corpus_functions(answers):
    for unit, expected in [(Bleu(), corpus_bleu(answers.predictions, answers.references)),
                           (Bleu(smooth_method="floor", lowercase=True),
                            corpus_bleu(answers.predictions, answers.references, smooth_method="floor",
                                        lowercase=True)),
                           (Chrf(), corpus_chrf(answers.predictions, answers.references)),
                           (Chrf(word_order=2), corpus_chrf(answers.predictions, answers.references, word_order=2))]:
        assert _corpus(unit, unit.name, answers) == expected.score
        entry = unit.score(answers, Bootstrap(0)).corpus[unit.name]
        assert entry["score"] == expected.score and entry["signature"] == expected.signature


def test_mean_units_equal_the_per_record_functions(answers):
    for unit, fn in [(ExactMatch(), exact_match), (TokenF1(), token_f1)]:
        values = [fn(p, refs) for p, refs in zip(answers.predictions, answers.present)]
        assert unit.statistics(answers).tolist() == values
        assert unit.score(answers, Bootstrap(0)).corpus[unit.name] == {"mean": float(np.mean(values))}
    statistics = Rouge(types=("rouge1", "rougeL")).statistics(answers)  # (n, types, P/R/F)
    expected = rouge(answers.predictions, answers.present, ("rouge1", "rougeL"))
    assert statistics.tolist() == [[list(r["rouge1"]), list(r["rougeL"])] for r in expected]
    records = [{"prediction": p, "references": r} for p, r in zip(answers.predictions, answers.references)]
    corpus = score_records(records, "rouge", rouge_types="rouge1,rougeL", bootstrap=0)[0]
    assert corpus["rougeL"]["f1"] == float(np.mean([r["rougeL"].fmeasure for r in expected]))


def test_classification_unit_macro_f1_from_statistics():
    gold = ["pos", "neg", "neutral", "pos", "neg", "pos"]
    predictions = ["pos", "it is neg", "no idea", "neg", "neutral", "pos or neg"]
    records = Records(predictions, [], gold)
    unit = Classification(labels=["pos", "neg", "neutral"])
    verbalizers = Verbalizers.build(["pos", "neg", "neutral"])
    mapped = [extract_label(p, verbalizers) for p in predictions]
    report = classification_report(gold, mapped, ["pos", "neg", "neutral"])
    assert _corpus(unit, "macro_f1", records) == pytest.approx(report["macro"]["f1"], abs=1e-15)
    scored = unit.score(records, Bootstrap(0))
    assert unit.headline("accuracy", scored)[0] == report["accuracy"] == 2 / 6
    assert unit.headline("unmapped", scored)[0] == 2 and unit.keys() == ("accuracy", "macro_f1", "unmapped")


def test_loglikelihood_units():
    choice = MultipleChoice().per_record({"logprobs": [-3.0, -4.0], "choices": ["a", "ééééé"], "answer_index": 1})
    assert choice == {"acc": 0.0, "acc_norm": 1.0, "acc_bytes": 1.0, "predicted_index": 0}
    unit = Perplexity()
    stats = unit.statistics([{"logprob": -6.0, "n_tokens": 3, "n_bytes": 0},
                             {"logprob": -2.0, "n_tokens": 1, "n_bytes": 4}])
    assert stats.tolist() == [[6.0, 3.0, 1.0], [2.0, 1.0, 4.0]]
    summed = stats.sum(axis=0)
    assert unit.corpus_fn("token_nll")(summed) == 2.0 and unit.corpus_fn("perplexity")(summed) == np.exp(2.0)
    assert unit.corpus_fn("bits_per_byte")(summed) == pytest.approx(8 / (np.log(2) * 5))


def test_one_vocabulary_from_units_to_reports():
    from tunelab.config import scoring

    every_unit = {**UNITS, "multiple_choice": MultipleChoice, "perplexity": Perplexity, "preference": Preference}
    assert {k.unit for k in vocabulary.KEYS.values()} == set(every_unit) - {"rouge"}
    for name, key in vocabulary.KEYS.items():
        unit = every_unit[key.unit]()
        assert name in unit.keys()
        assert unit.higher_is_better(name) == scoring.higher_is_better(name) == key.higher_is_better
    assert scoring.known_metrics("generate") == ("accuracy", "exact_match", "token_f1", "bleu", "chrf")
    assert scoring.known_metrics("perplexity") == ("token_nll", "perplexity", "bits_per_byte")
    assert [scoring.scale_of(m) for m in ("bleu", "rougeLsum", "macro_f1", "perplexity", "unmapped")] == [
        "0-100", "0-1", "0-1", "perplexity", "unmapped"]
    assert scoring.higher_is_better("some_lm_eval_metric") and scoring.scale_of("rougeW") == "0-1"
    # a task's names -> the units that compute them; names no unit reports by request are left out
    assert vocabulary.units_for(["rougeL", "accuracy", "bleu", "rouge1", "macro_f1", "acc"]) == {
        "rouge": ["rougeL", "rouge1"], "bleu": ["bleu"], "classification": ["accuracy"],
        "multiple_choice": ["acc"]}
    assert [u.name for u in make_units("classification,token_f1,rouge")] == ["rouge", "token_f1", "classification"]
