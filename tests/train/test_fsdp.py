"""FSDP with 2 CPU processes (gloo): the same loss curve as one process, sharded checkpoints that
survive SIGKILL and resume bit-identically, on 2 "nodes" (torchrun, localhost rendezvous) and on
1 process, and one consolidated model that plain transformers loads."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tunelab.config import ConfigError, load_config
from tunelab.train import train
from train_helpers import subprocess_env, toy_config

STEPS = 12


def fsdp_config(tmp_path, model_dir, name, batch_size, **extra):
    return toy_config(tmp_path, model_dir, name=name, n=40, method="full", lr=1e-3, max_steps=STEPS,
                      batch_size=batch_size, checkpoint_every=4, eval_every=4, keep_last=3, keep_best=False,
                      distributed={"strategy": "fsdp"}, **extra,
                      # under FSDP every process generates for every batch, in step (each forward gathers)
                      eval_generation={"enabled": True, "limit": 5, "max_new_tokens": 2, "batch_size": 2})


def launcher(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        if os.environ.get("CI"):  # make test installs accelerate and torch: a skip would hide a broken setup
            raise AssertionError(f"{path} is missing")
        pytest.skip(f"{name} is not installed next to this Python")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def curve(run: Path) -> dict:
    """{(step, kind): value} of the training and validation losses in metrics.jsonl."""
    out = {}
    for e in map(json.loads, open(run / "metrics.jsonl")):
        if "loss" in e:
            out[(e["step"], "loss")] = e["loss"]
        if "val_loss" in e:
            out[(e["step"], "val_loss")] = e["val_loss"]
    return out


def wait_then_kill(proc, metrics: Path, step: int, timeout: float = 300) -> None:
    """SIGKILL the whole launch (launcher and workers) once a step >= `step` is logged."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended before the kill: {proc.stderr.read()[-3000:]}")
        if metrics.exists() and any(json.loads(line).get("step", 0) >= step
                                    for line in metrics.read_text().splitlines() if '"loss"' in line):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for training progress")


def assert_close(a: dict, b: dict, rel: float = 1e-5) -> None:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    for key in a:
        assert abs(a[key] - b[key]) <= rel * abs(a[key]), (key, a[key], b[key])


@pytest.mark.slow
def test_fsdp_matches_one_process_and_resumes_after_sigkill(tmp_path, tiny_model_dir):
    # One process, global batch 8: the reference curve and model.
    reference = train(load_config(data=fsdp_config(tmp_path, tiny_model_dir, "one", batch_size=8)))

    # 1) FSDP on 2 processes (accelerate launch), batch 4 each: killed with SIGKILL mid-run.
    config = tmp_path / "fsdp.yaml"
    config.write_text(yaml.safe_dump(fsdp_config(tmp_path, tiny_model_dir, "fsdp", batch_size=4)))
    run = tmp_path / "runs" / "fsdp"
    proc = subprocess.Popen([launcher("accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                             "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                             "-m", "tunelab.cli", "train", str(config)],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_then_kill(proc, run / "metrics.jsonl", 6)
    before_kill = curve(run)
    checkpoints = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("step-*"))
    assert checkpoints and checkpoints[-1] >= 4, checkpoints
    shards = {p.name.split("-model-")[0] for p in (run / "checkpoints" / f"step-{checkpoints[-1]}" / "sharded").iterdir()}
    assert shards == {"shard-00001", "shard-00002"}, shards  # each process wrote its own shard
    redone = {k: v for k, v in before_kill.items() if k[0] > checkpoints[-1]}
    assert redone, "the kill came before any step past the last checkpoint"
    killed = tmp_path / "killed"
    shutil.copytree(run, killed)

    # 2) Resume on 2 "nodes" of 1 process each (torchrun, localhost rendezvous), to the end.
    port, nodes = free_port(), []
    for _ in range(2):
        nodes.append(subprocess.Popen(
            [launcher("torchrun"), "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
             "--rdzv_endpoint", f"localhost:{port}", "--rdzv_id", "fsdp-test", "-m", "tunelab.cli", "train",
             str(config), "--resume"], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    resumed = curve(run)
    assert {k: resumed[k] for k in redone} == redone  # the steps after the checkpoint, again: bit-identical
    assert_close(curve(reference), resumed)  # and the whole curve is one process's, to float tolerance
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["processes"]) == ("completed", STEPS, 2)
    validations = [e for e in map(json.loads, open(run / "metrics.jsonl")) if e.get("split") == "validation"]
    assert [e["step"] for e in validations] == [4, 8, 12] and all("val_accuracy" in e for e in validations)

    # 3) The consolidated model: one safetensors folder that plain transformers loads, with the
    #    one-process run's logits.
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 5, 77, 300, 2000, 42]])
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(reference / "final").eval()(ids).logits
        got = AutoModelForCausalLM.from_pretrained(run / "final").eval()(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)

    # 4) The killed run (as it was before step 2) resumed on 1 process, resharded: the global
    #    batch must stay 8 ...
    shutil.rmtree(run)
    killed.rename(run)
    raw = fsdp_config(tmp_path, tiny_model_dir, "fsdp", batch_size=4)
    with pytest.raises(ConfigError, match="global batch would change from 8"):
        train(load_config(data=raw), resume=True)
    # ... and with batch 8 it continues the same curve.
    train(load_config(data={**raw, "train": {**raw["train"], "batch_size": 8}}), resume=True)
    assert_close(curve(reference), curve(run))
    assert json.loads((run / "env.json").read_text())["processes"] == 1


def test_accelerate_fsdp_plugin_is_refused_with_a_pointer(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --use_fsdp` sets
    with pytest.raises(ConfigError, match="train.distributed.strategy=fsdp"):
        train(load_config(data=toy_config(tmp_path, tiny_model_dir)))
    assert not (tmp_path / "runs").exists()
