"""`tunelab score`: the engine (score_records / compare_records) and the CLI, on random and real data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import sacrebleu
from sacrebleu.metrics.chrf import CHRF

from tunelab.cli.main import main
from tunelab.metrics.bleu import corpus_bleu
from tunelab.metrics.classification import classification_report
from tunelab.metrics.errors import MetricInputError
from tunelab.metrics.score import compare_records, score_records
from tunelab.metrics.stats import approx_randomization, bootstrap_ci, mcnemar, paired_bootstrap


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def self_instruct(shared_data):
    folder = shared_data / "instructions" / "self_instruct_predictions"
    systems = {}
    for name in ("text-davinci-003", "text-davinci-001"):
        rows = [json.loads(line) for line in (folder / f"{name}_predictions.jsonl").open()]
        systems[name] = [{"prediction": r["response"].strip(), "reference": r["target"]} for r in rows]
    return systems["text-davinci-003"], systems["text-davinci-001"]


def test_text_metrics_identical_to_references(random_corpus, corpus_tools):
    records = [{"prediction": h, "references": r} for h, r in random_corpus[:600]]
    corpus, per_record = score_records(records, "bleu,chrf,exact_match,token_f1", bleu_smooth="floor", bootstrap=0)
    hyps = [h for h, _ in random_corpus[:600]]
    streams = corpus_tools.to_streams([r for _, r in random_corpus[:600]])
    theirs = sacrebleu.corpus_bleu(hyps, streams, smooth_method="floor")
    assert corpus["bleu"]["score"] == theirs.score and corpus["bleu"]["sys_len"] == theirs.sys_len
    assert corpus["chrf"]["score"] == CHRF().corpus_score(hyps, streams).score
    assert corpus["n"] == 600 and len(per_record) == 600 and "bootstrap" not in corpus
    chrf = CHRF()
    for i, (hyp, refs) in enumerate(random_corpus[:200]):
        assert per_record[i]["index"] == i
        assert per_record[i]["bleu"] == sacrebleu.sentence_bleu(hyp, refs, smooth_method="floor").score
        assert per_record[i]["chrf"] == chrf.sentence_score(hyp, refs).score
    assert corpus["exact_match"]["mean"] == np.mean([r["exact_match"] for r in per_record])


def test_rouge_path_and_cis_on_real_data(self_instruct):
    from tunelab.metrics.rouge import rouge

    records, _ = self_instruct
    corpus, per_record = score_records(records, ["rouge", "bleu"], rouge_types="rouge1,rougeL",
                                       use_stemmer=True, bootstrap=40, seed=7)
    direct = rouge([r["prediction"] for r in records], [[r["reference"]] for r in records],
                   ["rouge1", "rougeL"], use_stemmer=True)
    f1 = np.array([d["rouge1"].fmeasure for d in direct])
    assert corpus["rouge1"]["f1"] == pytest.approx(f1.mean(), abs=1e-12)
    # the same resamples as bootstrap_ci; the means differ only in float summation order
    assert corpus["rouge1"]["f1_ci"] == pytest.approx(list(bootstrap_ci(f1, 40, 0.95, seed=7)), abs=1e-12)
    recall = np.array([d["rouge1"].recall for d in direct])
    assert corpus["rouge1"]["recall_ci"] == pytest.approx(list(bootstrap_ci(recall, 40, 0.95, seed=7)), abs=1e-12)
    assert per_record[5]["rougeL"]["recall"] == direct[5]["rougeL"].recall
    # corpus BLEU CI: resample the records (same stream) and recompute corpus BLEU from scratch
    rng = np.random.default_rng(7)
    scores = []
    for _ in range(40):
        idx = rng.integers(0, len(records), size=len(records))
        scores.append(corpus_bleu([records[i]["prediction"] for i in idx], [[records[i]["reference"]] for i in idx]).score)
    assert corpus["bleu"]["score_ci"] == pytest.approx(list(np.quantile(scores, [0.025, 0.975])), abs=1e-9)
    assert corpus["bleu"]["score_ci"][0] < corpus["bleu"]["score"] < corpus["bleu"]["score_ci"][1]


def test_empty_predictions_and_references_score_zero():
    records = [
        {"prediction": "", "references": ["a cat sat"]},
        {"prediction": "a cat sat", "references": [""]},
        {"prediction": "", "reference": ""},
        {"prediction": "   ", "references": [None, "x"]},
        {"prediction": "a cat sat", "reference": "a cat sat"},
        {"prediction": "Привет мир", "reference": "привет мир"},  # no tokens for rouge-score's tokenizer
        {"prediction": "x", "references": [""]},
    ]
    corpus, per_record = score_records(records, "rouge,bleu,chrf,exact_match,token_f1", bootstrap=50)
    for row in per_record[:2]:
        assert row["rouge1"]["f1"] == 0.0 and row["bleu"] == 0.0 and row["chrf"] == 0.0
        assert row["exact_match"] == 0.0 and row["token_f1"] == 0.0
    assert per_record[4]["rouge1"]["f1"] == 1.0 and per_record[4]["exact_match"] == 1.0
    assert per_record[5]["rougeLsum"]["f1"] == 0.0 and per_record[5]["exact_match"] == 1.0
    assert corpus["n"] == 7


def test_classification_through_label_extraction():
    records = [
        {"prediction": "Positive.", "label": "positive"},
        {"prediction": "I would say this is a great film", "label": "positive"},
        {"prediction": "The review is negative", "label": "negative"},
        {"prediction": "It has positive and negative sides", "label": "negative"},
        {"prediction": "no idea", "label": "positive"},
    ]
    labels = {"positive": ["great"], "negative": []}
    corpus, per_record = score_records(records, ["classification"], labels=labels, bootstrap=0)
    report = corpus["classification"]
    expected = classification_report([r["label"] for r in records],
                                     ["positive", "positive", "negative", None, None], ["positive", "negative"])
    assert {k: report[k] for k in expected} == expected
    assert report["n_unmapped"] == 2 and report["accuracy"] == 0.6
    assert report["label_extraction"]["by_reason"] == {"exact": 1, "mention": 2, "ambiguous": 1, "no_match": 1}
    assert per_record[3]["classification"] == {"label": "negative", "predicted": None, "correct": False,
                                               "reason": "ambiguous"}


def test_compare_two_real_systems(self_instruct):
    a, b = self_instruct
    result = compare_records(a, b, "bleu,token_f1,exact_match", bootstrap=200, permutations=300, seed=1)
    f1 = result["tests"]["token_f1"]
    f1_a = np.array(score_records(a, "token_f1", bootstrap=0)[0]["token_f1"]["mean"])
    assert f1["a"] == pytest.approx(float(f1_a))
    per_a = [r["token_f1"] for r in score_records(a, "token_f1", bootstrap=0)[1]]
    per_b = [r["token_f1"] for r in score_records(b, "token_f1", bootstrap=0)[1]]
    assert f1["paired_bootstrap"] == paired_bootstrap(per_a, per_b, 200, seed=1)
    assert f1["approx_randomization"] == approx_randomization(per_a, per_b, 300, seed=1)
    bleu = result["tests"]["bleu"]
    assert bleu["a"] == result["a"]["corpus"]["bleu"]["score"] and bleu["diff"] > 0
    assert bleu["paired_bootstrap"]["ci"][0] < bleu["diff"] < bleu["paired_bootstrap"]["ci"][1]
    assert 0 < bleu["approx_randomization"]["p_value"] <= 1
    swapped = compare_records(b, a, "bleu", bootstrap=200, permutations=300, seed=1)["tests"]["bleu"]
    assert swapped["diff"] == -bleu["diff"]
    assert swapped["approx_randomization"]["p_value"] == bleu["approx_randomization"]["p_value"]


def test_compare_classification_has_mcnemar():
    gold = ["pos", "neg"] * 20
    a = [{"prediction": g, "label": g} for g in gold]
    b = [{"prediction": g if i % 3 else "hmm", "label": g} for i, g in enumerate(gold)]
    tests = compare_records(a, b, "classification", bootstrap=100, permutations=100)["tests"]
    expected = mcnemar([True] * 40, [bool(i % 3) for i in range(40)])
    assert tests["accuracy"]["mcnemar"] == expected and expected["b"] == 14 and expected["exact"]


def test_compare_needs_the_same_records():
    a = [{"prediction": "x", "reference": "y"}]
    with pytest.raises(MetricInputError, match="1 records but .* has 2"):
        compare_records(a, a * 2, "bleu", sources=("A.jsonl", "B.jsonl"))
    with pytest.raises(MetricInputError, match="B.jsonl:1: references differ"):
        compare_records(a, [{"prediction": "x", "reference": "z"}], "bleu", sources=("A.jsonl", "B.jsonl"))


BAD_FILES = [
    ('{"prediction": "a", "references": ["a"]}\n{"prediction": "a", "references": ["a"\n', ":2: invalid JSON"),
    ('{"prediction": "a", "references": ["a"]}\n\n[1, 2]\n', ":3: expected a JSON object, got list"),
    ('{"references": ["a"]}\n', ":1: field 'prediction' is missing"),
    ('{"prediction": 3, "references": ["a"]}\n', ":1: field 'prediction' must be a string, got number"),
    ('{"prediction": "a", "references": "a"}\n', ":1: field 'references' must be a list of strings, got string"),
    ('{"prediction": "a", "references": ["a", 5]}\n', ":1: field 'references[1]' must be a string or null, got number"),
    ('{"prediction": "a", "references": [null]}\n', ":1: field 'references' has no reference"),
    ('{"prediction": "a", "references": []}\n', ":1: field 'references' has no reference"),
    ('{"prediction": "a", "reference": "a", "references": ["a"]}\n', ":1: give either field 'references' or 'reference'"),
    ('{"prediction": "a"}\n', ":1: field 'references' is missing"),
    ("\n\n", ": no records"),
]


@pytest.mark.parametrize("content,message", BAD_FILES)
def test_cli_malformed_file_is_a_clean_error(tmp_path, capsys, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    assert main(["score", str(path), "--metrics", "bleu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tunelab: error: ") and f"{path}{message}" in err
    assert "Traceback" not in err


def test_cli_other_user_errors(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "c.jsonl", [{"prediction": "a", "label": "a"}, {"prediction": "b"}])
    assert main(["score", str(path), "--metrics", "classification"]) == 2
    assert f"{path}:2: field 'label' is missing" in capsys.readouterr().err
    path_ok = _write_jsonl(tmp_path / "d.jsonl", [{"prediction": "a", "label": "a"}, {"prediction": "b", "label": "c"}])
    assert main(["score", str(path_ok), "--labels", "a,b"]) == 2
    assert f"{path_ok}:2: field 'label' is 'c', not one of the labels ['a', 'b']" in capsys.readouterr().err
    text = _write_jsonl(tmp_path / "t.jsonl", [{"prediction": "a", "reference": "a"}])
    assert main(["score", str(text), "--metrics", "rouge", "--rouge-types", "rougeX"]) == 2
    assert "invalid ROUGE type 'rougeX'" in capsys.readouterr().err
    assert main(["score", str(path), "--metrics", "bleu,meteor"]) == 2
    assert "unknown metric(s) ['meteor']" in capsys.readouterr().err
    assert main(["score"]) == 2
    assert "give either FILE.jsonl or --compare" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["score", str(path), "--bleu-tokenize", "moses"])
    assert exc.value.code == 2


def test_cli_outputs(tmp_path, capsys, self_instruct):
    a, b = self_instruct
    file_a = _write_jsonl(tmp_path / "a.jsonl", a)
    file_b = _write_jsonl(tmp_path / "b.jsonl", b)
    out, per = tmp_path / "out" / "corpus.json", tmp_path / "per.jsonl"
    argv = ["score", str(file_a), "--metrics", "rouge,bleu,token_f1", "--rouge-types", "rouge1,rougeLsum",
            "--bootstrap", "100", "--seed", "3", "--per-record", str(per), "--output", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["n"] == 252 and set(printed) >= {"rouge1", "rougeLsum", "bleu", "token_f1", "bootstrap"}
    assert len(printed["rouge1"]["f1_ci"]) == 2 and printed["bleu"]["signature"].startswith("nrefs:1|")
    rows = [json.loads(line) for line in per.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(252))
    assert set(rows[0]) == {"index", "rouge1", "rougeLsum", "bleu", "token_f1"}
    assert main(["score", "--compare", str(file_a), str(file_b), "--metrics", "bleu",
                 "--bootstrap", "100", "--permutations", "100"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["tests"]["bleu"]["diff"] > 0 and compared["n"] == 252


def test_metrics_import_is_light():
    code = (
        "import sys, tunelab.metrics, tunelab.metrics.score, tunelab.metrics.bleu, tunelab.metrics.chrf, "
        "tunelab.metrics.stats, tunelab.metrics.classification, tunelab.metrics.labels, tunelab.cli.score; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scoring_pauses_the_collector_and_restores_it():
    """score_records holds off the cyclic GC while it builds per-record dicts (gc_paused.py) and
    leaves it as it found it, also after an error."""
    import gc

    seen = []
    records = [{"prediction": "a b", "reference": "a c"}] * 3
    assert gc.isenabled()
    score_records(records, ["rouge"], bootstrap=0, progress=lambda msg: seen.append(gc.isenabled()))
    assert seen and not any(seen) and gc.isenabled()
    with pytest.raises(MetricInputError):
        score_records([{"prediction": 1}], ["rouge"])
    assert gc.isenabled()
    gc.disable()
    try:
        score_records(records, ["rouge"], bootstrap=0)
        assert not gc.isenabled()
    finally:
        gc.enable()


def _label_records(seed, n):
    rng = np.random.default_rng(seed)
    gold = rng.choice(["pos", "neg", "neutral"], size=n).tolist()
    answers = {"pos": "Positive.", "neg": "negative", "neutral": "it is neutral"}
    preds = [answers[g] if rng.random() < 0.6 else rng.choice(["no idea", "Positive", "neg or pos", "neutral"])
             for g in gold]
    return [{"prediction": p, "label": g} for p, g in zip(preds, gold)]


def test_classification_macro_cis():
    from tunelab.metrics.classification import classification_cis

    records = _label_records(0, 300)
    corpus, per_record = score_records(records, ["classification"], labels=["pos", "neg", "neutral"],
                                       bootstrap=200, seed=5, confidence=0.9)
    report = corpus["classification"]
    mapped = [r["classification"]["predicted"] for r in per_record]
    gold = [r["label"] for r in records]
    cis = classification_cis(gold, mapped, ["pos", "neg", "neutral"], 200, 0.9, seed=5)
    assert {key: report[key] for key in cis} == cis
    correct = [float(r["classification"]["correct"]) for r in per_record]
    assert report["accuracy_ci"] == list(bootstrap_ci(correct, 200, 0.9, seed=5))
    for key, point in (("macro_f1", report["macro"]["f1"]), ("macro_precision", report["macro"]["precision"]),
                       ("macro_recall", report["macro"]["recall"]), ("weighted_f1", report["weighted"]["f1"])):
        lo, hi = report[f"{key}_ci"]
        assert lo < point < hi, key
    no_ci = score_records(records, ["classification"], labels=["pos", "neg", "neutral"], bootstrap=0)[0]
    assert not any(key.endswith("_ci") for key in no_ci["classification"])


def test_compare_classification_tests_macro_f1():
    from tunelab.metrics.classification import classification_statistics, macro_f1_score_fn
    from tunelab.metrics.stats import approx_randomization_statistic, paired_bootstrap_statistic

    a, b = _label_records(1, 200), _label_records(2, 200)
    b = [{"prediction": rb["prediction"], "label": ra["label"]} for ra, rb in zip(a, b)]  # same gold
    labels = ["pos", "neg", "neutral"]
    result = compare_records(a, b, "classification", labels=labels, bootstrap=150, permutations=120, seed=3)
    test = result["tests"]["macro_f1"]
    assert test["a"] == result["a"]["corpus"]["classification"]["macro"]["f1"]
    assert test["b"] == result["b"]["corpus"]["classification"]["macro"]["f1"]
    assert test["diff"] == test["a"] - test["b"]
    gold = [r["label"] for r in a]
    stats = [classification_statistics(gold, [r["classification"]["predicted"] for r in score_records(
        side, "classification", labels=labels, bootstrap=0)[1]], labels) for side in (a, b)]
    score_fn = macro_f1_score_fn(len(labels))
    assert test["paired_bootstrap"] == paired_bootstrap_statistic(*stats, score_fn, 150, 3, 0.95)
    assert test["approx_randomization"] == approx_randomization_statistic(*stats, score_fn, 120, 3)
    assert set(result["tests"]) == {"accuracy", "macro_f1"} and "mcnemar" in result["tests"]["accuracy"]
    with pytest.raises(MetricInputError, match="B.jsonl:2: field 'label' is"):
        flipped = [dict(r) for r in a]
        flipped[1]["label"] = "pos" if a[1]["label"] != "pos" else "neg"
        compare_records(a, flipped, "classification", labels=labels, sources=("A.jsonl", "B.jsonl"))


def test_every_ci_uses_the_requested_number_of_resamples(monkeypatch):
    """No cap anywhere: every draw of resamples is for exactly `bootstrap` of them, and the
    intervals are those of exactly that many resamples (they change with it)."""
    import tunelab.metrics.stats as stats

    drawn, original = [], stats.resample_index_blocks

    def counting(n, n_resamples, seed):
        rows = 0
        for block in original(n, n_resamples, seed):
            rows += len(block)
            yield block
        drawn.append(rows)

    monkeypatch.setattr(stats, "resample_index_blocks", counting)
    text = [{"prediction": f"a cat {'sat ' * (i % 4)}here", "reference": f"a cat sat {'down ' * (i % 3)}"}
            for i in range(60)]
    for records, metrics in ((text, "rouge,bleu,chrf,exact_match,token_f1"), (_label_records(4, 60), "classification")):
        for bootstrap in (137, 1500):
            drawn.clear()
            corpus, _ = score_records(records, metrics, bootstrap=bootstrap, seed=2)
            assert corpus["bootstrap"]["n_resamples"] == bootstrap
            assert drawn and set(drawn) == {bootstrap}
            drawn.clear()
            tests = compare_records(records, records, metrics, bootstrap=bootstrap, permutations=50, seed=2)["tests"]
            assert drawn and set(drawn) == {bootstrap}
            assert all(t["paired_bootstrap"]["n_resamples"] == bootstrap for t in tests.values())
    values = [r["token_f1"] for r in score_records(text, "token_f1", bootstrap=0)[1]]
    for bootstrap in (137, 1500):
        ci = score_records(text, "token_f1", bootstrap=bootstrap, seed=2)[0]["token_f1"]["ci"]
        assert ci == list(bootstrap_ci(values, bootstrap, seed=2))
    assert list(bootstrap_ci(values, 137, seed=2)) != list(bootstrap_ci(values, 1500, seed=2))


def test_rouge_signature():
    from tunelab.metrics.bleu import _tunelab_version
    from tunelab.metrics.rouge import rouge_signature

    impl = f"impl:tunelab-{_tunelab_version()}"
    assert rouge_signature(1, use_stemmer=True) == (
        f"nrefs:1|mode:rouge-score|stem:yes|tok:default|types:rouge1,rouge2,rougeL,rougeLsum|{impl}|version:0.1.2")
    assert rouge_signature("var", ["rouge2", "rougeW-1.2"], mode="rouge155", tokenizer="unicode", alpha=0.25,
                           multi_ref="B") == (
        f"nrefs:var|mode:rouge155|stem:no|tok:unicode|alpha:0.25|multiref:B|stop:no|types:rouge2,rougeW-1.2|"
        f"{impl}|version:1.5.5")
    assert "|alpha:0.5|multiref:A|stop:yes|" in rouge_signature(2, "rougeL", mode="rouge155", remove_stopwords=True)
    for kwargs, message in (({"mode": "rouge"}, "unknown ROUGE mode"), ({"tokenizer": "x"}, "unknown ROUGE tokenizer"),
                            ({"alpha": 0.5}, "takes no options"), ({"mode": "rouge155", "beta": 1}, "options are"),
                            ({"mode": "rouge155", "use_stemmer": True}, "stemming")):
        with pytest.raises(ValueError, match=message):
            rouge_signature(1, **kwargs)
    with pytest.raises(ValueError, match="invalid ROUGE type"):
        rouge_signature(1, ["rougeX"])


def test_rouge_signature_in_score_output():
    from tunelab.metrics.rouge import rouge_signature

    records = [{"prediction": "a cat sat", "references": ["a cat", None]}, {"prediction": "x", "reference": "x y"}]
    corpus, _ = score_records(records, "rouge", rouge_types="rouge1,rougeL", use_stemmer=True, bootstrap=0)
    expected = rouge_signature(1, ["rouge1", "rougeL"], use_stemmer=True)  # null references are dropped
    assert corpus["rouge_signature"] == expected
    assert corpus["rouge1"]["signature"] == corpus["rougeL"]["signature"] == expected
    records.append({"prediction": "y", "references": ["y", "z"]})
    corpus, _ = score_records(records, "rouge", rouge_mode="rouge155", rouge_options={"multi_ref": "B"}, bootstrap=0)
    assert corpus["rouge_signature"].startswith("nrefs:var|mode:rouge155|stem:no|tok:default|alpha:0.5|multiref:B|")
    with pytest.raises(MetricInputError, match="rouge: mode 'rouge155' options are"):
        score_records(records, "rouge", rouge_mode="rouge155", rouge_options={"beta": 2})
