"""evaluate(): results JSON + per-example JSONL that explain every number; the cache; MC and perplexity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tunelab.config.evaluate import GenerationConfig
from tunelab.evaluate.generation import WorkCounter
from tunelab.evaluate.harness import evaluate, read_examples
from tunelab.evaluate.scoring import score_choices, score_perplexity


def tasks(shared_data):
    return [f"sst2={shared_data}/sst2",
            f"mmlu={shared_data}/mmlu_subset,subjects=anatomy",
            f"dialogsum={shared_data}/dialogsum,metrics=rouge1+rougeL",
            f"t0={shared_data}/t0_multitask_mix/glue_mrpc_paraphrase.jsonl",
            f"dialogsum={shared_data}/dialogsum,eval_kind=perplexity,name=dialogsum_ppl"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_results_trace_to_examples_and_cache_skips_work(peaked_model_dir, shared_data, tmp_path, home):
    out = tmp_path / "eval"
    gen = GenerationConfig(max_new_tokens=6)
    first = WorkCounter()
    res = evaluate(peaked_model_dir, tasks(shared_data), limit=5, output_dir=out, generation=gen, counter=first,
                   n_resamples=200)
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["tasks"]) == {"sst2", "mmlu", "dialogsum", "t0_glue", "dialogsum_ppl"}
    assert saved["versions"]["torch"] and saved["generation"]["max_new_tokens"] == 6
    for name, task in saved["tasks"].items():
        rows = read_examples(out, name)
        assert len(rows) == task["n"] == 5
        assert task["config"]["name"] == name and task["metrics"]
        for metric, entry in task["metrics"].items():
            if entry.get("ci") is None:
                continue
            lo, hi = entry["ci"]
            assert lo <= entry["value"] + 1e-9 and entry["value"] <= hi + 1e-9 and entry["n"] == 5
            if metric in ("perplexity", "bits_per_byte"):
                nll = sum(r["scores"]["nll"] for r in rows)
                tok = sum(r["scores"]["n_tokens"] for r in rows)
                if metric == "perplexity":
                    assert entry["value"] == pytest.approx(math.exp(nll / tok))
            elif metric == "macro_f1":  # a corpus statistic: recomputed from the per-example labels
                from tunelab.metrics.classification import classification_report

                report = classification_report([r["label"] for r in rows],
                                               [r["scores"]["predicted_label"] for r in rows], task["labels"])
                assert entry["value"] == pytest.approx(report["macro"]["f1"])
            elif metric == "token_nll":
                assert entry["value"] == pytest.approx(sum(r["scores"]["nll"] for r in rows)
                                                       / sum(r["scores"]["n_tokens"] for r in rows))
            else:  # the corpus value is the mean of the per-example scores in the JSONL
                assert entry["value"] == pytest.approx(np.mean([r["scores"][metric] for r in rows]))
        for r in rows:
            assert r["prompt"].startswith("<|im_start|>") and r["key"].startswith("test:")
    sst2 = read_examples(out, "sst2")
    assert all(r["label"] in ("negative", "positive") and "prediction" in r for r in sst2)
    mmlu = read_examples(out, "mmlu")
    assert all(len(r["logprobs"]) == 4 and r["prediction"] in r["choices"] for r in mmlu)
    assert first.forward_calls > 0 and first.model_loads == 1

    again = WorkCounter()
    res2 = evaluate(peaked_model_dir, tasks(shared_data), limit=5, output_dir=tmp_path / "eval2", generation=gen,
                    counter=again, n_resamples=200)
    assert again.forward_calls == 0 and again.model_loads == 0 and again.generated_tokens == 0
    for name in res["tasks"]:
        assert res2["tasks"][name]["metrics"] == res["tasks"][name]["metrics"]
    # other generation settings are other cache entries
    changed = WorkCounter()
    evaluate(peaked_model_dir, [tasks(shared_data)[0]], limit=5, output_dir=tmp_path / "eval3",
             generation=GenerationConfig(max_new_tokens=7), counter=changed, n_resamples=200)
    assert changed.forward_calls > 0


def test_batch_size_does_not_change_scores(peaked_model_dir, shared_data, tmp_path, home):
    spec = [f"mmlu={shared_data}/mmlu_subset,subjects=marketing", f"sst2={shared_data}/sst2"]
    a = evaluate(peaked_model_dir, spec, limit=6, batch_size=1, cache=False, n_resamples=100,
                 generation=GenerationConfig(max_new_tokens=5), output_dir=tmp_path / "a")
    b = evaluate(peaked_model_dir, spec, limit=6, batch_size=6, cache=False, n_resamples=100,
                 generation=GenerationConfig(max_new_tokens=5), output_dir=tmp_path / "b")
    la = [r["logprobs"] for r in read_examples(tmp_path / "a", "mmlu")]
    lb = [r["logprobs"] for r in read_examples(tmp_path / "b", "mmlu")]
    assert np.allclose(la, lb, atol=1e-4)
    assert [r["prediction"] for r in read_examples(tmp_path / "a", "sst2")] == \
           [r["prediction"] for r in read_examples(tmp_path / "b", "sst2")]


def test_loglikelihood_matches_a_direct_forward(peaked_model_dir, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    from tunelab.evaluate.loglikelihood import continuation_ids, score_requests

    model = AutoModelForCausalLM.from_pretrained(peaked_model_dir).eval()
    ctx_text = "<|im_start|>user\nWhich is right?<|im_end|>\n<|im_start|>assistant\n"
    ctx = tokenizer(ctx_text, add_special_tokens=False)["input_ids"]
    conts = [continuation_ids(tokenizer, ctx_text, c) for c in ("Paris", "a much longer answer here")]
    got = score_requests(model, [(ctx, c) for c in conts], batch_size=2, pad_id=tokenizer.pad_token_id)
    for c, g in zip(conts, got):
        with torch.no_grad():
            logits = model(torch.tensor([ctx + c])).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        expected = sum(float(lp[len(ctx) - 1 + i, t]) for i, t in enumerate(c))
        assert g["logprob"] == pytest.approx(expected, abs=1e-4) and g["n_tokens"] == len(c)


def test_choice_metrics_follow_lm_eval_definitions():
    # choice 1 has the best total log-likelihood; per character choice 0 wins; per byte choice 2 wins
    record = {"choices": ["aaaaaaaaaa", "b", "ééééé"], "logprobs": [-10.0, -3.0, -6.0], "answer_index": 0}
    # per char: -1.0, -3.0, -1.2 -> 0; per byte (é is 2 bytes): -1.0, -3.0, -0.6 -> 2
    corpus, per = score_choices([record], ["acc", "acc_norm", "acc_bytes"], n_resamples=10)
    assert per[0]["acc"] == 0.0 and per[0]["acc_norm"] == 1.0 and per[0]["acc_bytes"] == 0.0
    assert per[0]["predicted_index"] == 1


def test_perplexity_is_token_weighted():
    recs = [{"logprob": -10.0, "n_tokens": 10, "n_bytes": 40}, {"logprob": -2.0, "n_tokens": 1, "n_bytes": 4}]
    corpus, per = score_perplexity(recs, ["perplexity", "bits_per_byte"], n_resamples=200)
    assert corpus["perplexity"]["value"] == pytest.approx(math.exp(12 / 11))
    assert corpus["bits_per_byte"]["value"] == pytest.approx(12 / (math.log(2) * 44))
    assert per[1]["token_nll"] == pytest.approx(2.0)
    lo, hi = corpus["perplexity"]["ci"]
    assert lo <= corpus["perplexity"]["value"] <= hi


def test_shared_context_equals_scoring_from_scratch(peaked_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    from tunelab.evaluate.loglikelihood import continuation_ids, score_requests, score_shared_context

    model = AutoModelForCausalLM.from_pretrained(peaked_model_dir).eval()
    groups = []
    for q, opts in (("Capital of France?", ["Paris", "Lyon", "a city in the south", "Nice"]),
                    ("A much longer question about anatomy and the facial nerve, with more words?", ["yes", "no"]),
                    ("2+2?", ["4", "five", "22"])):
        ctx_text = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                 tokenize=False)
        ctx = tokenizer(ctx_text, add_special_tokens=False)["input_ids"]
        groups.append((ctx, [continuation_ids(tokenizer, ctx_text, o) for o in opts]))
    shared = score_shared_context(model, groups, batch_size=3, pad_id=tokenizer.pad_token_id)
    for (ctx, opts), got in zip(groups, shared):
        plain = score_requests(model, [(ctx, o) for o in opts], batch_size=1, pad_id=tokenizer.pad_token_id)
        assert [g["logprob"] for g in got] == pytest.approx([p["logprob"] for p in plain], abs=1e-4)
        assert [g["is_greedy"] for g in got] == [p["is_greedy"] for p in plain]
