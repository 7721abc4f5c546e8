"""Real-model and multi-process tests (slow): SmolLM2-135M LoRA on SST-2, and DDP with 2 CPU processes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunelab.config import load_config
from tunelab.train import train
from train_helpers import subprocess_env, toy_config


def sst2_config(tmp_path, shared_data) -> dict:
    return {
        "name": "sst2-lora",
        "seed": 0,
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": "smollm2-135m-instruct"},
        "data": {
            "max_length": 128,
            "split": {"train": 0.7, "validation": 0.1, "test": 0.2},
            "tasks": [{"name": "sst2", "kind": "classification",
                       "source": {"path": str(shared_data / "sst2" / "sst2_glue_validation.tsv")},
                       "fields": {"text": "sentence", "label": "label"},
                       "system_prompt": "Classify sentiment.",  # shorter than SmolLM2's default
                       "labels": {0: "negative", 1: "positive"}}],
        },
        "train": {"method": "lora", "lr": 1e-3, "max_steps": 60, "batch_size": 8, "precision": "auto",
                  "scheduler": "cosine", "warmup_steps": 5, "eval_at_start": True, "eval_every": 30,
                  "eval_limit": 48, "eval_batch_size": 24, "progress": "plain", "lora": {"r": 8, "alpha": 16}},
    }


@pytest.mark.slow
def test_smollm2_lora_sst2_beats_base_model(tmp_path, shared_data, smollm2_dir):
    import torch

    from tunelab.data import prepare
    from tunelab.metrics.classification import classification_report
    from tunelab.metrics.labels import extract_label
    from tunelab.models import load_model
    from tunelab.train.validate import generate_greedy

    torch.set_num_threads(1)  # the machine is shared: extra threads spin instead of helping
    cfg = load_config(data=sst2_config(tmp_path, shared_data))
    run = train(cfg)
    val = [e["val_loss"] for e in map(json.loads, open(run / "metrics.jsonl")) if e.get("split") == "validation"]
    assert len(val) == 3 and val[-1] < val[0] * 0.7, val  # steps 0, 30, 60

    model, tokenizer = load_model(cfg.model, adapter=str(run))
    test = prepare(cfg, tokenizer).tasks["sst2"].splits["test"][:120]
    prompts = [e.prompt_ids for e in test]
    gold = [e.label for e in test]
    # The precision training used: bf16 where native, fp32 on AVX2-only CPUs (emulated bf16 is slower).
    precision = json.loads((run / "summary.json").read_text())["precision"]
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")  # noqa: E731
    with model.disable_adapter():
        base_out = generate_greedy(model, tokenizer, prompts, max_new_tokens=3, batch_size=24, autocast=bf16)
    tuned_out = generate_greedy(model, tokenizer, prompts, max_new_tokens=3, batch_size=24, autocast=bf16)
    labels = ["negative", "positive"]
    base = classification_report(gold, [extract_label(t, labels) for t in base_out], labels=labels)
    tuned = classification_report(gold, [extract_label(t, labels) for t in tuned_out], labels=labels)
    print(f"SST-2 test accuracy (n={len(test)}): base {base['accuracy']:.3f} ({base['n_unmapped']} unmapped), "
          f"LoRA {tuned['accuracy']:.3f} ({tuned['n_unmapped']} unmapped); val_loss {val}")
    assert tuned["accuracy"] > base["accuracy"] + 0.05
    assert tuned["accuracy"] >= 0.7


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(tmp_path, tiny_model_dir):
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists():
        pytest.skip("the accelerate launcher is not installed next to this Python")
    common = {"n": 40, "max_steps": 4, "lr": 1e-2, "eval_every": 2, "grad_accum": 1}
    one = train(load_config(data=toy_config(tmp_path, tiny_model_dir, name="one", batch_size=8, **common)))
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(toy_config(tmp_path, tiny_model_dir, name="two", batch_size=4, **common)))
    # The flags from docs/training.md: --multi_gpu with no GPU gives CPU processes on gloo.
    done = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "tunelab.cli", "train", str(config)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    two = tmp_path / "runs" / "two"
    assert json.loads((two / "summary.json").read_text())["processes"] == 2

    def curve(run):
        return [(e["step"], e.get("loss", e.get("val_loss"))) for e in map(json.loads, open(run / "metrics.jsonl"))
                if "loss" in e or "val_loss" in e]

    a, b = curve(one), curve(two)
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 2, 3, 4, 4]
    for (_, x), (_, y) in zip(a, b):
        assert abs(x - y) <= 1e-5 * abs(x), (a, b)
