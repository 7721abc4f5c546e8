"""Honest time (summary.json's wall_s and phase_s, an ETA for the training steps only), the
forgetting table on `tunelab train`, result files that follow the umask, `eval --config` with the
config's model."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml

from fault_helpers import tunelab_command

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import subprocess_env, toy_config  # noqa: E402


def held_out_task(folder: Path) -> Path:
    """A small held-out task scored by log-likelihood (fast): the forgetting section's."""
    data = folder / "held.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completion": f" answer {i}"}) + "\n"
                            for i in range(8)))
    task = folder / "held.yaml"
    task.write_text(yaml.safe_dump({"name": "held", "kind": "completion", "splits": {"test": str(data)},
                                    "eval_kind": "perplexity"}))
    return task


def test_progress_eta_counts_training_steps_only(capsys):
    from tunelab.train.progress import Progress

    progress = Progress(total=10, start=0, mode="plain")
    with progress.clock.phase("pre_scoring"):  # e.g. the forgetting section's scoring of the base model
        time.sleep(0.5)
    with progress.clock.phase("training"):
        time.sleep(0.01)
    progress.update(1, loss=1.0, tokens_per_s=100.0)
    line = capsys.readouterr().err.strip()
    assert line.startswith("step 1/10") and line.endswith("(training steps only)")
    eta = float(line.split("eta ")[1].split("s")[0])
    assert eta < 0.5  # 9 steps of ~0.01 s, not the 0.5 s of scoring


def test_clock_phases_nest_without_counting_twice():
    from tunelab.train.progress import Clock

    clock = Clock()
    with clock.phase("validation"):
        time.sleep(0.05)
        with clock.phase("saving"):  # the best step's checkpoint, written inside validation
            time.sleep(0.1)
    assert 0.1 <= clock.phases["saving"] < 0.15
    assert 0.05 <= clock.phases["validation"] < 0.1


def test_clock_counts_the_open_phases_so_far():
    # What a heartbeat records in the middle of a phase: its time so far, nested phases once.
    from tunelab.train.progress import Clock

    clock = Clock()
    with clock.phase("validation"):
        time.sleep(0.05)
        with clock.phase("saving"):
            time.sleep(0.05)
        with clock.phase("saving"):
            time.sleep(0.05)
            now = clock.so_far()
    assert 0.1 <= now["saving"] < 0.14 and 0.05 <= now["validation"] < 0.09, now
    assert clock.so_far()["validation"] == clock.phases["validation"]  # nothing open: the phases


def test_train_prints_the_forgetting_table_and_times_every_phase(tmp_path, tiny_model_dir):
    raw = toy_config(tmp_path, tiny_model_dir, max_steps=4, batch_size=4, eval_every=2, checkpoint_every=2)
    raw["forgetting"] = {"tasks": [str(held_out_task(tmp_path))], "limit": 4, "bootstrap_resamples": 20}
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run(tunelab_command() + ["train", str(config)], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| task | metric | n | base | tuned |" in done.stderr and "| held | token_nll | 4 |" in done.stderr
    summary = json.loads((tmp_path / "runs" / "run" / "summary.json").read_text())
    phases = summary["phase_s"]
    assert set(phases) == {"setup", "pre_scoring", "training", "validation", "saving", "post_scoring"}
    assert all(v > 0 for v in phases.values()), phases
    assert summary["wall_s_per_start"] == [summary["wall_s"]]
    assert sum(phases.values()) <= summary["wall_s"] + 0.01  # the phases are parts of the whole
    assert f"training steps {phases['training']:.0f} s" in done.stderr


def test_result_files_follow_the_umask(tmp_path):
    from tunelab.files import write_json

    for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(umask)
        try:
            path = write_json(tmp_path / f"results-{umask:o}.json", {"a": 1})
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == mode, oct(umask)


def test_eval_config_uses_the_config_model(tmp_path, tiny_model_dir, capsys, monkeypatch):
    from tunelab.cli.main import main

    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": tiny_model_dir},
                                      "eval": {"tasks": [str(held_out_task(tmp_path))], "limit": 3,
                                               "bootstrap_resamples": 10}}))
    old = os.umask(0o022)
    try:
        assert main(["eval", "--config", str(config), "--output", str(tmp_path / "out")]) == 0
    finally:
        os.umask(old)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["model"]["base"] == tiny_model_dir
    for name in ("results.json", "held.examples.jsonl"):  # readable by the team, as the umask says
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == 0o644
