"""`tunelab train` with a preference objective: real pairs, a tiny Llama, LoRA.

The run folder is an SFT run's (metrics.jsonl with the rewards, checkpoints, final/ adapter), a
resume from a checkpoint continues bit-identically, and configs a preference objective cannot
train are refused before any model loads.
"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tunelab.config import load_config
from tunelab.config.base import ConfigError
from tunelab.train import train


def preference_config(tmp_path, model_dir, shared_data, name="dpo", objective="dpo", kind="preference", **train_keys):
    file = "llamafactory_dpo_en_demo.json" if kind == "preference" else "llamafactory_kto_en_demo.json"
    train_cfg = {"method": "lora", "objective": objective, "lr": 1e-2, "scheduler": "constant", "max_steps": 3,
                 "batch_size": 2, "grad_accum": 2, "precision": "fp32", "progress": "off", "checkpoint_every": 1,
                 "keep_last": 5, "lora": {"r": 4, "dropout": 0.1}, "preference": {"beta": 0.5}, **train_keys}
    return {"name": name, "seed": 5, "output_dir": str(tmp_path / "runs"), "model": {"name": model_dir},
            "data": {"max_length": 96, "cache": False,
                     "tasks": [{"name": "prefs", "kind": kind, "limit": 30,
                                "source": str(shared_data / "preferences" / file)}]},
            "train": train_cfg}


def events(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_run_checkpoints_and_resumes_bit_identically(method, tmp_path, tiny_model_dir, shared_data):
    """lora: the reference is the base with the adapter off; full: the starting model's log-probs,
    stored before the first step and computed again (the same) when the run resumes."""
    def config(name, **keys):
        return load_config(data=preference_config(tmp_path, tiny_model_dir, shared_data, name, method=method,
                                                  **({"lr": 1e-3} if method == "full" else {}), **keys))

    straight = train(config("straight"))
    steps = [e for e in events(straight) if "loss" in e]
    assert [e["step"] for e in steps] == [1, 2, 3]
    for e in steps:  # the step's pairs: 2 micro-batches of 2
        assert e["examples"] == 4 and e["label_tokens"] == 4
        assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "logps/chosen", "logps/rejected"} <= e.keys()
        assert e["rewards/margins"] == pytest.approx(e["rewards/chosen"] - e["rewards/rejected"], abs=1e-9)
    # step 1: the policy is the reference, so every reward is 0 and the loss log 2 (full: the stored
    # log-probs came from other batch shapes, equal up to float rounding)
    assert steps[0]["rewards/chosen"] == pytest.approx(0, abs=1e-5)
    assert steps[0]["loss"] == pytest.approx(0.6931471805599453, rel=1e-5)
    assert abs(steps[-1]["rewards/margins"]) > 1e-4
    assert json.loads((straight / "summary.json").read_text())["status"] == "completed"
    weights = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    assert (straight / "final" / weights).exists()
    assert sorted(p.name for p in (straight / "checkpoints").iterdir() if p.name.startswith("step-")) == \
        ["step-1", "step-2", "step-3"]

    # two steps, then --resume to the third: the same losses and the same adapter, bit for bit
    resumed = train(config("resumed", max_steps=2))
    train(config("resumed"), resume=True)
    again = [e for e in events(resumed) if "loss" in e]
    assert [(e["step"], e["loss"], e["rewards/margins"]) for e in again] == \
        [(e["step"], e["loss"], e["rewards/margins"]) for e in steps]
    a, b = load_file(straight / "final" / weights), load_file(resumed / "final" / weights)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_kto_run_logs_kl_and_rewards(tmp_path, tiny_model_dir, shared_data):
    cfg = preference_config(tmp_path, tiny_model_dir, shared_data, "kto", objective="kto", kind="kto", max_steps=2,
                            grad_accum=1, batch_size=4, checkpoint_every=None)
    run = train(load_config(data=cfg))
    steps = [e for e in events(run) if "loss" in e]
    assert len(steps) == 2 and all("kl" in e and e["kl"] >= 0 for e in steps)
    assert steps[0]["loss"] == pytest.approx(0.5, rel=1e-6)  # zero adapter: 1 - sigmoid(0) for every example
    assert any("rewards/chosen" in e or "rewards/rejected" in e for e in steps)


@pytest.mark.parametrize("change,message", [
    ({"objective": "kto"}, "trains on tasks of kind kto"),
    ({"packing": True}, "not with train.packing"),
])
def test_configs_a_preference_objective_cannot_train_are_refused(tmp_path, tiny_model_dir, shared_data, change,
                                                                  message):
    cfg = preference_config(tmp_path, tiny_model_dir, shared_data)
    cfg["train"].update(change)
    with pytest.raises(ConfigError, match=message):
        train(load_config(data=cfg))
    assert not (tmp_path / "runs" / "dpo").exists()


@pytest.mark.parametrize("change,message", [
    ({"batch_size": 1}, "batch_size must be 2"),
    ({"method": "full"}, "kto needs an adapter method"),
])
def test_kto_needs_two_examples_per_micro_batch_and_an_adapter(tmp_path, tiny_model_dir, shared_data, change,
                                                               message):
    cfg = preference_config(tmp_path, tiny_model_dir, shared_data, objective="kto", kind="kto", **change)
    with pytest.raises(ConfigError, match=message):
        train(load_config(data=cfg))
