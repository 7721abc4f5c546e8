"""Preference training with 2 CPU processes (gloo) against one process, on the real LLaMA-Factory
pairs and a tiny Llama: the same global batch gives the same run to float tolerance.

One `accelerate launch` (docs/training.md's flags) runs the five two-process runs one after the
other (the process group stays up between runs, as for continual stages):
- DPO with LoRA under DDP (the default `train.distributed`) and under FSDP (`strategy: fsdp`),
  batch_size 2 per process, against one process with batch_size 4: the same per-step loss, the
  same rewards/* and logps/* metrics and the same final adapter;
- full fine-tuning DPO (the starting model's log-probs stored once before training, on every
  process, before DDP or FSDP wraps the model), under DDP and under FSDP: the same losses, metrics
  and final weights as one process;
- KTO: its z0 (`kl`) is estimated per micro-batch and per process (docs/preference.md). Each of
  the two processes takes one micro-batch of 2 examples (batch_size 2), and the one-process run
  takes the same two micro-batches of 2 (batch_size 2, grad_accum 2: plan_steps gives part m of
  the step to micro-step m of one process, and to process m of two). So the micro-batches, hence
  the z0 estimates, are the same, and the run is compared with one process exactly like DPO's:
  loss, kl and rewards per step, and the final adapter.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from test_fsdp import launcher
from test_preference_train import preference_config
from tunelab.config import load_config
from tunelab.train import train
from train_helpers import subprocess_env

STEPS = 3
# Each run's config keys: (one process, each of two processes); both take 4 items a step.
RUNS = {
    "dpo-ddp": ({"batch_size": 4}, {"batch_size": 2}),
    "dpo-fsdp": ({"batch_size": 4}, {"batch_size": 2, "distributed": {"strategy": "fsdp"}, "checkpoint_every": STEPS}),
    "dpo-full": ({"batch_size": 4, "method": "full", "lr": 1e-3}, {"batch_size": 2, "method": "full", "lr": 1e-3}),
    "dpo-full-fsdp": ({"batch_size": 4, "method": "full", "lr": 1e-3},
                      {"batch_size": 2, "method": "full", "lr": 1e-3, "distributed": {"strategy": "fsdp"}}),
    # kto: no length grouping, so the epoch's last, short batch (31 examples) comes after step 3
    # and every micro-batch holds 2 examples
    "kto": ({"batch_size": 2, "grad_accum": 2, "group_by_length": False}, {"batch_size": 2, "group_by_length": False}),
}
DRIVER = """\
import sys
from tunelab.config import load_config
from tunelab.train import train
for path in sys.argv[1:]:
    train(load_config(path))
"""


def run_config(tmp_path, model_dir, shared_data, name: str, two: bool) -> dict:
    one_keys, two_keys = RUNS[name]
    kto = name == "kto"
    keys = {"max_steps": STEPS, "grad_accum": 1, "checkpoint_every": None, "lora": {"r": 4, "dropout": 0.0},
            **(two_keys if two else one_keys)}
    cfg = preference_config(tmp_path, model_dir, shared_data, name=name + ("-two" if two else "-one"),
                            objective="kto" if kto else "dpo", kind="kto" if kto else "preference", **keys)
    # the demo files' answers are long: at preference_config's 96 tokens only 4 pairs (3 kto
    # examples, all desirable) would train; here 14 pairs (31 kto examples, both labels)
    cfg["data"]["max_length"] = 256
    cfg["data"]["tasks"][0]["limit"] = 80 if kto else 60
    return cfg


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, tiny_model_dir, shared_data):
    """name -> the run folder of its one-process run, trained in this process once (the LoRA DPO
    run is the reference of both dpo-ddp and dpo-fsdp, the full one of dpo-full and dpo-full-fsdp)."""
    root, done = tmp_path_factory.mktemp("one"), {}

    def run(name: str) -> Path:
        key = {"dpo-fsdp": "dpo-ddp", "dpo-full-fsdp": "dpo-full"}.get(name, name)
        if key not in done:
            done[key] = train(load_config(data=run_config(root, tiny_model_dir, shared_data, key, two=False)))
        return done[key]
    return run


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory, tiny_model_dir, shared_data) -> Path:
    """The runs of RUNS with 2 processes, in one launch; returns the folder holding runs/."""
    root = tmp_path_factory.mktemp("two")
    configs = []
    for name in RUNS:
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(run_config(root, tiny_model_dir, shared_data, name, two=True)))
        configs.append(str(path))
    (root / "driver.py").write_text(DRIVER)
    done = subprocess.run([launcher("accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
                           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
                           str(root / "driver.py"), *configs],
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return root


def steps(run: Path) -> list[dict]:
    return [e for e in map(json.loads, open(run / "metrics.jsonl")) if "loss" in e]


def assert_same_run(one: Path, two: Path, metrics: set[str], weights: str) -> None:
    a, b = steps(one), steps(two)
    assert [e["step"] for e in a] == [e["step"] for e in b] == list(range(1, STEPS + 1))
    for x, y in zip(a, b):
        assert metrics <= x.keys() and x.keys() & metrics == y.keys() & metrics, (x, y)
        # 4 items a step (the epoch's last, short batch may come early: length grouping shuffles batches)
        assert x["examples"] == x["label_tokens"] == y["examples"] == y["label_tokens"] <= 4
        for key in sorted(metrics | {"loss"}):  # step 1's rewards are 0 up to rounding: an absolute floor
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-5), (x["step"], key, x[key], y[key])
    summary = json.loads((two / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["processes"]) == ("completed", STEPS, 2)
    want, got = load_file(one / "final" / weights), load_file(two / "final" / weights)
    assert want.keys() == got.keys() and want  # FSDP's consolidated final/ too: a tied head once
    # Adam divides by sqrt(v): an element whose gradient is at float-rounding size moves by a visible
    # fraction of lr (seen: one element of a LoRA A matrix by 3e-4 at lr 1e-2), so each tensor is
    # compared as a whole, and no element may be off by a tenth of one update
    for key in want:
        diff = (got[key] - want[key]).float()
        assert float(diff.norm()) <= 1e-3 * float(want[key].float().norm()) + 1e-7, (key, float(diff.norm()))
        assert float(diff.abs().max()) <= 1e-3, (key, float(diff.abs().max()))


PAIR_METRICS = {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dpo-ddp", "dpo-fsdp"])
def test_lora_dpo_on_two_processes_matches_one(name, two_process_runs, one_process_run):
    one = one_process_run(name)
    two = two_process_runs / "runs" / f"{name}-two"
    assert_same_run(one, two, PAIR_METRICS, "adapter_model.safetensors")
    assert abs(steps(two)[-1]["rewards/margins"]) > 1e-4  # the adapter moved the rewards
    if name == "dpo-fsdp":  # the checkpoint of an FSDP run is sharded, one file per process
        shards = {p.name.split("-model-")[0] for p in (two / "checkpoints" / f"step-{STEPS}" / "sharded").iterdir()}
        assert shards == {"shard-00001", "shard-00002"}, shards


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dpo-full", "dpo-full-fsdp"])
def test_full_fine_tuning_dpo_stores_the_reference_on_two_processes(name, two_process_runs, one_process_run):
    one = one_process_run(name)
    two = two_process_runs / "runs" / f"{name}-two"
    assert_same_run(one, two, PAIR_METRICS, "model.safetensors")
    first = steps(two)[0]  # the stored reference is the starting model: step 1's policy, to rounding
    assert first["rewards/chosen"] == pytest.approx(0, abs=1e-5)
    assert first["loss"] == pytest.approx(0.6931471805599453, rel=1e-5)


@pytest.mark.slow
def test_kto_on_two_processes_logs_kl_and_matches_one_with_the_same_micro_batches(two_process_runs, one_process_run):
    one = one_process_run("kto")
    two = two_process_runs / "runs" / "kto-two"
    assert [e["examples"] for e in steps(two)] == [4] * STEPS  # 2 per micro-batch, as the docstring says
    for e in steps(two):
        assert e["kl"] >= 0 and all(math.isfinite(v) for k, v in e.items()
                                    if k.split("/")[0] in ("loss", "kl", "rewards", "logps"))
    assert_same_run(one, two, {"kl"}, "adapter_model.safetensors")
    # KTO logs rewards/chosen over the desirable examples and rewards/rejected over the others:
    # present in both runs or absent in both, and equal where present (both kinds are trained)
    assert any("rewards/chosen" in e for e in steps(two)) and any("rewards/rejected" in e for e in steps(two))
    for x, y in zip(steps(one), steps(two)):
        for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected"):
            assert (key in x) == (key in y), key
            if key in x:
                assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-5), (x["step"], key)
