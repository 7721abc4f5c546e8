"""Real-model acceptance: SmolLM2 batched == unbatched; LoRA on SST-2 -> forgetting report -> Chromium."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))


@pytest.mark.slow
def test_smollm2_batched_equals_unbatched_on_32(smollm2_dir, tokenizer, shared_data):
    import torch
    from transformers import AutoModelForCausalLM

    from tunelab.config.evaluate import GenerationConfig
    from tunelab.data import build_task
    from tunelab.evaluate.generation import generate
    from tunelab.evaluate.recipes import data_task_config, expand_task

    torch.set_num_threads(1)
    spec = expand_task(f"sst2={shared_data}/sst2")
    examples = build_task(data_task_config(spec), tokenizer).splits["train"][:32]
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    settings = GenerationConfig(max_new_tokens=10)
    ids = [e.prompt_ids for e in examples]
    batched = generate(model, tokenizer, ids, settings, batch_size=8)
    single = generate(model, tokenizer, ids, settings, batch_size=1)
    assert [o.token_ids for o in batched] == [o.token_ids for o in single]
    assert len({o.text for o in single}) > 3


@pytest.fixture
def all_cores():
    """This test process's share of the cores for the one long real-model test (all of them when the
    suite runs in one process); the thread count restored after."""
    import os

    import torch

    before = torch.get_num_threads()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_smollm2_lora_sst2_learns_and_its_forgetting_report_renders(tmp_path, shared_data, smollm2_dir, all_cores):
    """One real-model run (SmolLM2-135M LoRA on SST-2, 45 steps): the validation loss falls, the tuned
    model beats the base model on the run's own test split, and the forgetting: section's report
    (SST-2 plus three held-out tasks, each with CI and p) renders in Chromium."""
    from browser_check import render_and_check

    from tunelab.config import load_config
    from tunelab.config.evaluate import GenerationConfig
    from tunelab.evaluate import evaluate
    from tunelab.evaluate.harness import training_data
    from tunelab.report import write_report
    from tunelab.train import train

    d = shared_data
    cfg = load_config(data={
        "name": "sst2-lora", "seed": 0, "output_dir": str(tmp_path / "runs"),
        "model": {"name": "smollm2-135m-instruct"},
        "data": {"max_length": 128, "split": {"train": 0.7, "validation": 0.1, "test": 0.2},
                 "tasks": [{"name": "sst2", "kind": "classification",
                            "source": {"path": str(d / "sst2" / "sst2_glue_validation.tsv")},
                            "fields": {"text": "sentence", "label": "label"},
                            "system_prompt": "Classify sentiment.",  # shorter than SmolLM2's default
                            "labels": {0: "negative", 1: "positive"}}]},
        "train": {"method": "lora", "lr": 1e-3, "max_steps": 45, "batch_size": 8, "precision": "auto",
                  "scheduler": "cosine", "warmup_steps": 5, "eval_at_start": True, "eval_every": 30,
                  "eval_limit": 48, "eval_batch_size": 24, "progress": "plain", "lora": {"r": 8, "alpha": 16}},
        "forgetting": {"tuned_task": "sst2", "limit": 12, "bootstrap_resamples": 500, "tasks": [
            {"name": "sst2", "max_new_tokens": 6},
            f"mmlu={d}/mmlu_subset,subjects=marketing",
            f"dialogsum={d}/dialogsum,metrics=rougeL,max_new_tokens=16",
            f"t0={d}/t0_multitask_mix/rotten_tomatoes_Movie_Expressed_Sentiment.jsonl,max_new_tokens=6"]},
    })
    run = train(cfg)
    val = [e["val_loss"] for e in map(json.loads, open(run / "metrics.jsonl")) if e.get("split") == "validation"]
    assert len(val) == 3 and val[-1] < val[0] * 0.7, val  # steps 0, 30, 45

    # Base and tuned through the evaluation engine on the run's own test split (the bare task name);
    # bf16 weights where training ran in bf16 (native there), fp32 on AVX2-only CPUs.
    precision = json.loads((run / "summary.json").read_text())["precision"]
    kwargs = dict(limit=120, batch_size=24, n_resamples=200, generation=GenerationConfig(max_new_tokens=3),
                  dtype="bfloat16" if precision == "bf16" else "float32", cache=False)
    base = evaluate("smollm2-135m-instruct", ["sst2"], output_dir=tmp_path / "base", **training_data(cfg), **kwargs)
    tuned = evaluate(None, ["sst2"], run=str(run), output_dir=tmp_path / "tuned", **kwargs)
    b, t = base["tasks"]["sst2"], tuned["tasks"]["sst2"]
    assert b["split"] == t["split"] == "test" and b["example_keys_sha256"] == t["example_keys_sha256"]
    assert t["contamination"]["overlap"] == 0
    b_acc, t_acc = b["metrics"]["accuracy"]["value"], t["metrics"]["accuracy"]["value"]
    print(f"SST-2 test accuracy (n={t['n']}): base {b_acc:.3f} ({b['metrics']['unmapped']['value']} unmapped), "
          f"LoRA {t_acc:.3f} ({t['metrics']['unmapped']['value']} unmapped); val_loss {val}")
    assert t_acc > b_acc + 0.05 and t_acc >= 0.7

    report = json.loads((run / "forgetting" / "forgetting.json").read_text())
    rows = {r["task"]: r for r in report["tasks"]}
    assert set(rows) == {"sst2", "mmlu", "dialogsum", "t0_rotten"}
    for r in rows.values():
        assert r["n"] == 12 and len(r["ci"]) == 2 and 0 < r["p_value"] <= 1
        assert r["ci"][0] <= r["diff"] <= r["ci"][1]  # the difference and its CI: one statistic
    assert rows["mmlu"]["metric"] == "acc" and rows["dialogsum"]["metric"] == "rougeL"
    summary = report["summary"]
    assert summary["held_out_tasks"] == ["mmlu", "dialogsum", "t0_rotten"] and summary["held_out_change"] is not None
    print("forgetting:", json.dumps({k: (v["base"]["value"], v["tuned"]["value"], v["ci"], v["p_value"])
                                     for k, v in rows.items()}))
    assert summary["gain"]["diff"] > 0  # tuning on SST-2 helps SST-2 (the base model answers in sentences)
    for stage in ("base", "tuned"):  # every number has its examples behind it
        for task in rows:
            assert len((run / "forgetting" / stage / f"{task}.examples.jsonl").read_text().splitlines()) == 12
    html, md = write_report(run)
    render_and_check(html, tmp_path, ["Run and cost", "Loss curves", "Metrics", "Forgetting: base vs tuned",
                                      "Example predictions before vs after"],
                     {"plot-loss", "plot-metrics", "plot-forgetting"})
    assert "sst2 (tuned task)" in md.read_text()
