"""Exact resume: SIGTERM and SIGKILL at random steps, then --resume, equals one uninterrupted run."""

import json
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tunelab.config import load_config
from tunelab.train import checkpoint as ckpt
from tunelab.train import train
from train_helpers import subprocess_env, toy_config

STEPS = 10


def resume_config(tmp_path, tiny_model_dir, name):
    # LoRA dropout and a shuffled, length-grouped order: resume must restore RNG and data position.
    return toy_config(tmp_path, tiny_model_dir, name=name, max_steps=STEPS, batch_size=4, lr=1e-2,
                      checkpoint_every=2, eval_every=3, keep_last=2,
                      lora={"r": 4, "dropout": 0.1})


def start(config_path, *extra):
    return subprocess.Popen([sys.executable, "-m", "tunelab.cli", "train", str(config_path), *extra],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(proc, metrics, step, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()[-2000:]}")
        if metrics.exists():
            done = [json.loads(line).get("step", 0) for line in metrics.read_text().splitlines() if '"loss"' in line]
            if done and max(done) >= step:
                return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for training progress")


def step_losses(run):
    return {e["step"]: e["loss"] for e in map(json.loads, open(run / "metrics.jsonl")) if "loss" in e}


def test_kill_and_resume_is_bit_identical(tmp_path, tiny_model_dir):
    reference = train(load_config(data=resume_config(tmp_path, tiny_model_dir, "reference")))

    config_path = tmp_path / "interrupted.yaml"
    config_path.write_text(yaml.safe_dump(resume_config(tmp_path, tiny_model_dir, "interrupted")))
    run = tmp_path / "runs" / "interrupted"
    rng = random.Random()
    # 1) SIGTERM: a checkpoint and a clean exit (status 143, "terminated": the run did not finish).
    term_at = rng.randint(1, 4)
    proc = start(config_path)
    wait_for_step(proc, run / "metrics.jsonl", term_at)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "--resume" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "terminated" and summary["phase"] in ("training", "saving", "validation")
    assert (run / "checkpoints" / f"step-{summary['steps']}").exists()
    # 2) SIGKILL at a random later step: no chance to save anything.
    kill_at = rng.randint(summary["steps"] + 1, STEPS - 1)
    proc = start(config_path, "--resume")
    wait_for_step(proc, run / "metrics.jsonl", kill_at)
    proc.kill()
    proc.wait()
    # 3) Resume to the end.
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "train", str(config_path), "--resume"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    ref_losses, got_losses = step_losses(reference), step_losses(run)
    assert sorted(got_losses) == list(range(1, STEPS + 1))
    assert got_losses == ref_losses  # bit-identical floats, every step
    ref_w = load_file(str(reference / "final" / "adapter_model.safetensors"))
    got_w = load_file(str(run / "final" / "adapter_model.safetensors"))
    assert ref_w.keys() == got_w.keys() and all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)
    ref_val = [e for e in map(json.loads, open(reference / "metrics.jsonl")) if e.get("split") == "validation"]
    got_val = [e for e in map(json.loads, open(run / "metrics.jsonl")) if e.get("split") == "validation"]
    assert ref_val == got_val
    # Kept: the last two checkpoints (best-metric saves count as checkpoints) and the best one.
    kept = [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")]
    best = json.loads((run / "summary.json").read_text())["best"]["step"]
    assert kept[-1] == STEPS and best in kept and len(set(kept) - {best}) <= 2, kept


def test_kill_during_save_leaves_previous_checkpoint_loadable(tmp_path, tiny_model_dir, monkeypatch):
    cfg = load_config(data=toy_config(tmp_path, tiny_model_dir, max_steps=2, checkpoint_every=1))
    run = train(cfg)
    folder = run / "checkpoints"
    before = ckpt.latest_checkpoint(folder)
    assert before.name == "step-2"

    calls = {"n": 0}
    real_save = ckpt.save_file

    def dies_midway(tensors, path, *a, **k):
        calls["n"] += 1
        real_save(tensors, path, *a, **k)
        if calls["n"] == 2:  # weights written, optimizer written, state.json not yet
            raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(ckpt, "save_file", dies_midway)
    # Continue the run for two more steps; the save of step 3 "dies".
    more = load_config(data=toy_config(tmp_path, tiny_model_dir, max_steps=4, checkpoint_every=1))
    with pytest.raises(KeyboardInterrupt):
        train(more, resume=True)
    assert not (folder / ".tmp-step-3").exists()  # the half-written one: removed, never renamed
    assert ckpt.latest_checkpoint(folder) == before
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(ckpt, "save_file", real_save)
    run = train(more, resume=True)
    assert not list(folder.glob(".tmp-*"))
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
