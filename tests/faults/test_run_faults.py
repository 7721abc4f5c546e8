"""A run folder is a transaction: faults a real cluster produces, injected for real, then `--resume`.

Each test runs `tunelab train` as a separate process (what a user runs), breaks it (SIGKILL after a
step or in the middle of a checkpoint write, a torn log line, a truncated checkpoint file, a full
disk, a second process on the same run, a changed config), and checks: one clear error line and a
non-zero exit where the command failed, nothing lost, and a run that `--resume` finishes
bit-identically to an uninterrupted one (same loss at every step, same validation, same weights).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from fault_helpers import cli_error, one_error_line, tunelab_command

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import toy_config  # noqa: E402

KILL_AT = str(Path(__file__).with_name("kill_at.py"))
STEPS = 12


def env() -> dict:
    out = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out.pop("TUNELAB_DEBUG", None)
    return out


def write(folder: Path, model_dir: str, name: str = "run", **train) -> Path:
    # LoRA dropout and a shuffled, length-grouped order: a resume must restore RNG and data position.
    raw = toy_config(folder, model_dir, name=name, max_steps=STEPS, batch_size=4, lr=1e-2, checkpoint_every=5,
                     eval_every=6, keep_last=2, lora={"r": 4, "dropout": 0.1}, **train)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def tunelab(*argv, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(tunelab_command() + [str(a) for a in argv], capture_output=True, text=True, env=env(),
                          timeout=timeout)


def inject(mode: str, n: int, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, KILL_AT, mode, str(n), *map(str, argv)], capture_output=True, text=True,
                          env=env(), timeout=300)


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def assert_same_run(run: Path, reference: Path) -> None:
    got, ref = events(run), events(reference)
    steps = [e["step"] for e in got if "loss" in e]
    assert steps == list(range(1, STEPS + 1))  # every step logged once, in order
    assert [e["loss"] for e in got if "loss" in e] == [e["loss"] for e in ref if "loss" in e]  # bit-identical
    strip = lambda e: {k: v for k, v in e.items() if k not in ("elapsed_s",)}  # noqa: E731
    assert [strip(e) for e in got if e.get("split") == "validation"] == \
           [strip(e) for e in ref if e.get("split") == "validation"]
    a = load_file(str(run / "final" / "adapter_model.safetensors"))
    b = load_file(str(reference / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def start_and_wait(config: Path, ready, timeout: float = 240) -> subprocess.Popen:
    """`tunelab train CONFIG` in the background, returned once ready() (or once it ended)."""
    proc = subprocess.Popen(tunelab_command() + ["train", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> Path:
    """The uninterrupted run every interrupted one must equal."""
    folder = tmp_path_factory.mktemp("reference")
    done = tunelab("train", write(folder, tiny_model_dir, "reference"))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "runs" / "reference"


def test_sigkill_after_a_step_then_torn_log_line_and_truncated_checkpoint(tmp_path, tiny_model_dir, reference):
    config = write(tmp_path, tiny_model_dir)
    run = tmp_path / "runs" / "run"
    killed = inject("step", 8, "train", config)
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-5", "step-6"]  # 6: best val
    with open(run / "metrics.jsonl", "a") as f:  # what a crash while appending leaves
        f.write('{"step": 9, "epoch": 0, "loss": 0.73')
    newest = run / "checkpoints" / "step-6" / "trainable.safetensors"
    size = newest.stat().st_size
    with open(newest, "r+b") as f:
        f.truncate(size - 100)
    done = tunelab("train", config, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "is not complete JSON" in done.stderr and "dropped" in done.stderr
    assert f"checkpoint {run / 'checkpoints' / 'step-6'} is damaged (trainable.safetensors has {size - 100} bytes" \
           in done.stderr
    assert "Traceback" not in done.stderr
    assert f"falling back to checkpoint {run / 'checkpoints' / 'step-5'}" in done.stderr
    assert f"resuming {run} from checkpoint step-5 (step 5 of {STEPS})" in done.stderr
    assert next(e for e in events(run) if e.get("event") == "resumed")["checkpoint"] == "step-5"
    assert_same_run(run, reference)


def test_a_moved_run_resumes_where_it_is_now(tmp_path, tiny_model_dir, reference):
    """Killed, moved to another folder, resumed there from a config naming the new place; killed
    again, moved again, resumed from the folder alone: the run of the reference, bit for bit, and
    its summary counts the time of all three starts."""
    import shutil

    config = write(tmp_path, tiny_model_dir)
    assert inject("step", 8, "train", config).returncode == -signal.SIGKILL
    second = tmp_path / "disk2" / "runs"
    second.mkdir(parents=True)
    shutil.move(tmp_path / "runs" / "run", second / "run")
    killed = inject("step", 10, "train", config, "--resume", f"output_dir={second}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert f"resuming {second / 'run'} from checkpoint step-6" in killed.stderr
    third = tmp_path / "elsewhere" / "moved"
    third.parent.mkdir()
    shutil.move(second / "run", third)  # renamed too: the folder's name is not the run's identity
    done = tunelab("train", third, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming {third} from checkpoint step-" in done.stderr and "Traceback" not in done.stderr
    assert str(tmp_path / "runs") not in (third / "config.resolved.yaml").read_text()
    assert_same_run(third, reference)
    summary = json.loads((third / "summary.json").read_text())
    assert len(summary["wall_s_per_start"]) == 3 and summary["wall_s_per_start"][0] > 0
    assert summary["wall_s"] == pytest.approx(sum(summary["wall_s_per_start"]), abs=0.01)
    assert str(third) in done.stdout and "3 starts" in done.stderr


def test_sigkill_before_the_first_checkpoint_starts_the_log_afresh(tmp_path, tiny_model_dir, reference):
    config = write(tmp_path, tiny_model_dir)
    run = tmp_path / "runs" / "run"
    assert inject("step", 3, "train", config).returncode == -signal.SIGKILL
    assert [e["step"] for e in events(run) if "loss" in e] == [1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["status"] == "running"  # what kill -9 leaves
    done = tunelab("train", config, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no checkpoint to resume from; starting from step 0" in done.stderr
    assert_same_run(run, reference)  # steps 1-3 are logged once, not twice


def test_sigkill_in_the_middle_of_a_checkpoint_write(tmp_path, tiny_model_dir, reference):
    config = write(tmp_path, tiny_model_dir)
    run = tmp_path / "runs" / "run"
    # safetensors writes per checkpoint: RNG state, trainable weights, optimizer. The 6th is the
    # optimizer file of the second checkpoint (step 6): half of it is on disk when the process dies.
    assert inject("save", 6, "train", config).returncode == -signal.SIGKILL
    assert (run / "checkpoints" / ".tmp-step-6").exists() and not (run / "checkpoints" / "step-6").exists()
    done = tunelab("train", config, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert next(e for e in events(run) if e.get("event") == "resumed")["checkpoint"] == "step-5"
    assert_same_run(run, reference)


def test_full_disk_in_a_checkpoint_write_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path, tiny_model_dir,
                                                                                     reference):
    from tunelab.train.checkpoint import damage

    config = write(tmp_path, tiny_model_dir)
    run = tmp_path / "runs" / "run"
    failed = inject("enospc", 6, "train", config)
    line = one_error_line(failed.returncode, failed.stderr)
    assert "trainable" not in line and ".tmp-step-6" in line and "no space left on the device" in line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "no space left" in summary["error"]
    assert damage(run / "checkpoints" / "step-5") is None and not (run / "checkpoints" / ".tmp-step-6").exists()
    done = tunelab("train", config, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_run(run, reference)


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_disk_that_fills_up_while_training(tmp_path, tiny_model_dir):
    """A real full file system (a 16 MB tmpfs, filled by another writer while the run trains)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "16m"):
        if os.environ.get("CI"):
            raise AssertionError("cannot mount a tmpfs here (CI runs as root): the disk-full test needs one")
        pytest.skip("mounting a tmpfs needs root")
    try:
        raw = toy_config(disk, tiny_model_dir, name="run", max_steps=400, batch_size=4, lr=1e-2,
                         checkpoint_every=5, keep_last=2)
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump(raw))
        run = disk / "runs" / "run"
        proc = start_and_wait(config, lambda: (run / "checkpoints" / "step-5").exists())
        with open(disk / "filler", "wb") as filler:  # someone else fills the disk
            try:
                while True:
                    filler.write(b"\0" * (1 << 16))
                    filler.flush()
            except OSError:
                pass
        _, err = proc.communicate(timeout=240)
        line = one_error_line(proc.returncode, err)
        assert "no space left on the device" in line and str(disk) in line
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "failed" and "no space left" in summary["error"]
        from tunelab.train.checkpoint import damage, list_checkpoints

        good = [p for _, p in list_checkpoints(run / "checkpoints") if damage(p) is None]
        assert good  # the checkpoints written before the disk filled are intact
        (disk / "filler").unlink()
        done = tunelab("train", config, "--resume", "train.max_steps=" + str(summary["steps"] + 3))
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_second_process_on_a_live_run_is_refused(tmp_path, tiny_model_dir):
    raw = toy_config(tmp_path, tiny_model_dir, name="run", max_steps=150, batch_size=4, checkpoint_every=50)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "runs" / "run"
    first = start_and_wait(config, lambda: (run / "metrics.jsonl").exists()
                           and '"loss"' in (run / "metrics.jsonl").read_text())
    assert first.poll() is None, "the first run ended before the test could race it"
    os.kill(first.pid, signal.SIGSTOP)  # paused, not finished: the race is certain, not a matter of speed
    try:
        for extra in (["--resume"], []):
            second = tunelab("train", config, *extra)
            line = one_error_line(second.returncode, second.stderr)
            assert f"is in use by process {first.pid}" in line or "already holds a run" in line, line
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert first.wait(timeout=300) == 0
    steps = [e["step"] for e in events(run) if "loss" in e]
    assert steps == list(range(1, 151))  # one writer: 150 step lines for 150 steps, in order


def test_resume_refuses_a_changed_config_and_logs_a_safe_change(tmp_path, tiny_model_dir, reference):
    config = write(tmp_path, tiny_model_dir)
    run = tmp_path / "runs" / "run"
    assert inject("step", 7, "train", config).returncode == -signal.SIGKILL
    refused = tunelab("train", config, "--resume", "train.lr=5e-3", "train.batch_size=8")
    line = one_error_line(refused.returncode, refused.stderr)
    assert "train.lr: 0.01 -> 0.005" in line and "train.batch_size: 4 -> 8" in line
    assert yaml.safe_load((run / "config.resolved.yaml").read_text())["train"]["lr"] == 0.01  # untouched
    done = tunelab("train", config, "--resume", "train.keep_last=3")
    assert done.returncode == 0, done.stderr[-3000:]
    change = next(e for e in events(run) if e.get("event") == "config_changed")
    assert change["changes"] == {"train.keep_last": {"old": 2, "new": 3}}
    assert_same_run(run, reference)


def test_failed_starts_leave_nothing_that_blocks_the_next_try(tmp_path, tiny_model_dir, capsys):
    config = write(tmp_path, tiny_model_dir)
    run = tmp_path / "runs" / "run"
    faults = [(f"data.tasks.0.source={tmp_path / 'missing.jsonl'}", "data file not found"),
              ("train.optimizer=adamm", "unknown optimizer"),
              (f"model.name={tmp_path / 'no-such-model'}", "does not exist"),
              ("train.method=qlora", "qlora")]
    for override, words in faults:  # in this process (the CLI's main): the same path, no startup cost
        assert words in cli_error(capsys, "train", config, override)
        assert not run.exists(), override  # checked before the run folder is made
    # A mistake found only once training runs (the early-stopping metric is checked at the first validation).
    failed = tunelab("train", config, "train.early_stopping.metric=val_acuracy", "train.eval_every=2")
    assert "'val_acuracy' is not logged" in one_error_line(failed.returncode, failed.stderr)
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    done = tunelab("train", config)  # the corrected command, without --resume
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replacing it" in done.stderr


def test_ctrl_c_during_eval_keeps_every_finished_batch(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    records = [{"text": f"review number {i} says it was {'good' if i % 2 else 'bad'}", "label": i % 2}
               for i in range(160)]
    task = {"name": "toy", "kind": "classification", "source": {"records": records}, "fields": {"text": "text"},
            "labels": {0: "negative", 1: "positive"}, "ratios": {"train": 0, "validation": 0, "test": 1},
            "max_new_tokens": 48}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    argv = ["eval", "--model", tiny_model_dir, "--task", str(tmp_path / "task.yaml"), "--batch-size", "4",
            "--bootstrap", "50", "--output", str(tmp_path / "eval")]
    proc = subprocess.Popen(tunelab_command() + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env(), "TUNELAB_HOME": str(home)})
    deadline = time.time() + 240
    lines = 0
    while time.time() < deadline and proc.poll() is None and lines < 12:
        lines = sum(len(p.read_text().splitlines()) for p in (home / "eval-cache").glob("*.jsonl")) \
            if (home / "eval-cache").exists() else 0
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "tunelab: interrupted" in err and "Traceback" not in err
    kept = sum(len(p.read_text().splitlines()) for p in (home / "eval-cache").glob("*.jsonl"))
    assert 12 <= kept < 160
    done = subprocess.run(tunelab_command() + argv, capture_output=True, text=True, timeout=300,
                          env={**env(), "TUNELAB_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-3000:]
    cache = json.loads((tmp_path / "eval" / "results.json").read_text())["tasks"]["toy"]["cache"]
    assert cache["hits"] >= kept and cache["hits"] + cache["misses"] == 160
