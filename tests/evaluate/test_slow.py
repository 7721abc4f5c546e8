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


@pytest.mark.slow
def test_smollm2_sst2_lora_forgetting_report_in_chromium(tmp_path, shared_data, smollm2_dir):
    import torch

    from browser_check import render_and_check

    from tunelab.config import load_config
    from tunelab.report import write_report
    from tunelab.train import train

    torch.set_num_threads(1)  # the machine is shared: extra threads spin instead of helping
    d = shared_data
    cfg = load_config(data={
        "name": "sst2-lora", "seed": 0, "output_dir": str(tmp_path / "runs"),
        "model": {"name": "smollm2-135m-instruct"},
        "data": {"max_length": 128, "split": {"train": 0.7, "validation": 0.1, "test": 0.2},
                 "tasks": [{"name": "sst2", "kind": "classification",
                            "source": {"path": str(d / "sst2" / "sst2_glue_validation.tsv")},
                            "fields": {"text": "sentence", "label": "label"}, "labels": {0: "negative", 1: "positive"}}]},
        "train": {"method": "lora", "lr": 1e-3, "max_steps": 30, "batch_size": 8, "precision": "auto",
                  "scheduler": "cosine", "warmup_steps": 4, "eval_every": 15, "eval_limit": 24, "eval_batch_size": 24,
                  "progress": "plain", "lora": {"r": 8, "alpha": 16}},
        "forgetting": {"tuned_task": "sst2", "limit": 12, "bootstrap_resamples": 500, "tasks": [
            {"name": "sst2", "max_new_tokens": 6},
            f"mmlu={d}/mmlu_subset,subjects=marketing",
            f"dialogsum={d}/dialogsum,metrics=rougeL,max_new_tokens=16",
            f"t0={d}/t0_multitask_mix/rotten_tomatoes_Movie_Expressed_Sentiment.jsonl,max_new_tokens=6"]},
    })
    run = train(cfg)
    report = json.loads((run / "forgetting" / "forgetting.json").read_text())
    rows = {r["task"]: r for r in report["tasks"]}
    assert set(rows) == {"sst2", "mmlu", "dialogsum", "t0_rotten"}
    for r in rows.values():
        assert r["n"] == 12 and len(r["ci"]) == 2 and 0 < r["p_value"] <= 1
        assert r["ci"][0] <= r["diff"] <= r["ci"][1]  # the difference and its CI: one statistic
    assert rows["mmlu"]["metric"] == "acc" and rows["dialogsum"]["metric"] == "rougeL"
    summary = report["summary"]
    assert summary["held_out_tasks"] == ["mmlu", "dialogsum", "t0_rotten"] and summary["average_drop"] is not None
    print("forgetting:", json.dumps({k: (v["base"]["value"], v["tuned"]["value"], v["ci"], v["p_value"])
                                     for k, v in rows.items()}))
    assert summary["gain"]["diff"] > 0  # tuning on SST-2 helps SST-2 (the base model answers in sentences)
    # every number has its examples behind it
    for stage in ("base", "tuned"):
        for task in rows:
            lines = (run / "forgetting" / stage / f"{task}.examples.jsonl").read_text().splitlines()
            assert len(lines) == 12
    html, md = write_report(run)
    render_and_check(html, tmp_path, ["Run and cost", "Loss curves", "Metrics", "Forgetting: base vs tuned",
                                      "Example predictions before vs after"],
                     {"plot-loss", "plot-metrics", "plot-forgetting"})
    assert "sst2 (tuned task)" in md.read_text()
