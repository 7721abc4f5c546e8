"""SIGINT (Ctrl-C) and SIGTERM stop every phase within a batch, keep finished work, and say so.

Each test runs the CLI as a separate process through slow_phase.py (every batch announced as
`slow: PHASE` on stderr and made slow), waits for the line of the phase it wants, sends the signal,
and checks: exit code 130 (SIGINT) or 143 (SIGTERM) within seconds, one `tunelab: interrupted|
terminated during PHASE` line and no traceback, summary.json's status and phase, and that the
same command (or `--resume`) then finishes, reusing the scores already computed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from fault_helpers import tunelab_command

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import toy_config  # noqa: E402

SLOW = str(Path(__file__).with_name("slow_phase.py"))
STOP_WITHIN_S = 10.0  # generous on a busy 2-core CI runner; the stop itself takes well under a second


def env(home: Path) -> dict:
    out = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "TUNELAB_HOME": str(home)}
    out.pop("TUNELAB_DEBUG", None)
    return out


def held_out_task(folder: Path, n: int = 6) -> Path:
    data = folder / "held.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Question {i}?", "completion": f" answer {i}"}) + "\n"
                            for i in range(n)))
    task = folder / "held.yaml"
    task.write_text(yaml.safe_dump({"name": "held", "kind": "completion", "splits": {"test": str(data)},
                                    "eval_kind": "perplexity"}))
    return task


def config(tmp_path: Path, model_dir: str, forgetting: bool = False, **train) -> Path:
    raw = toy_config(tmp_path, model_dir, n=24, **{"max_steps": 4, "batch_size": 4, "checkpoint_every": 2,
                                                   **train})
    if forgetting:
        raw["forgetting"] = {"tasks": [str(held_out_task(tmp_path))], "limit": 6, "batch_size": 2,
                             "bootstrap_resamples": 10}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def signal_in(phase: str, sig: int, argv: list, home: Path, nth: int = 1) -> tuple[int, str, float]:
    """Run `tunelab ARGV` slowly; at the nth `slow: PHASE` line send `sig`. (exit code, stderr,
    seconds from the signal to the exit)."""
    proc = subprocess.Popen([sys.executable, SLOW, phase, *map(str, argv)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env(home))
    lines, seen = [], 0
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        lines.append(line)
        if line.strip() == f"slow: {phase}":
            seen += 1
            if seen == nth:
                break
        assert time.monotonic() < deadline, "".join(lines)
    else:
        raise AssertionError(f"phase {phase} never started:\n{''.join(lines)}")
    sent = time.monotonic()
    proc.send_signal(sig)
    rest = proc.communicate(timeout=60)[1]
    took = time.monotonic() - sent
    return proc.returncode, "".join(lines) + rest, took


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.strip()][-1]


def tunelab(home: Path, *argv) -> subprocess.CompletedProcess:
    return subprocess.run(tunelab_command() + [str(a) for a in argv], capture_output=True, text=True,
                          env=env(home), timeout=300)


def summary(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "runs" / "run" / "summary.json").read_text())


def test_scoring_before_and_after_training_stop_and_resume_reuses_the_scores(tmp_path, tiny_model_dir):
    home, cfg = tmp_path / "home", config(tmp_path, tiny_model_dir, forgetting=True, max_steps=2)
    rc, err, took = signal_in("pre_scoring", signal.SIGINT, ["train", cfg], home, nth=2)  # one batch done
    assert rc == 130 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: interrupted during pre_scoring at step 0; continue with --resume"
    s = summary(tmp_path)
    assert (s["status"], s["phase"], s["steps"]) == ("interrupted", "pre_scoring", 0)

    rc, err, took = signal_in("post_scoring", signal.SIGTERM, ["train", cfg, "--resume"], home, nth=2)
    assert rc == 143 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: terminated during post_scoring at step 2; continue with --resume"
    s = summary(tmp_path)
    assert (s["status"], s["phase"]) == ("terminated", "post_scoring")
    run = tmp_path / "runs" / "run"
    assert (run / "final").is_dir()
    base = json.loads((run / "forgetting" / "base" / "results.json").read_text())
    assert base["tasks"]["held"]["cache"]["hits"] >= 2  # the batch finished before the first signal

    done = tunelab(home, "train", cfg, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary(tmp_path)["status"] == "completed"
    assert (run / "forgetting" / "forgetting.json").exists()
    tuned = json.loads((run / "forgetting" / "tuned" / "results.json").read_text())
    assert tuned["tasks"]["held"]["cache"]["hits"] >= 2  # the tuned model's finished batch, reused


def test_training_and_validation_stop_with_a_checkpoint_and_resume(tmp_path, tiny_model_dir):
    home, cfg = tmp_path / "home", config(tmp_path, tiny_model_dir, eval_every=2)
    rc, err, took = signal_in("training", signal.SIGTERM, ["train", cfg], home, nth=2)
    assert rc == 143 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: terminated during training at step 2; continue with --resume"
    s = summary(tmp_path)
    assert (s["status"], s["phase"], s["steps"]) == ("terminated", "training", 2)
    run = tmp_path / "runs" / "run"
    assert (run / "checkpoints" / "step-2").is_dir()

    # The resume first redoes step 2's validation (the signal abandoned it): stopped there again.
    rc, err, took = signal_in("validation", signal.SIGINT, ["train", cfg, "--resume"], home)
    assert rc == 130 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: interrupted during validation at step 2; continue with --resume"
    s = summary(tmp_path)
    assert (s["status"], s["phase"], s["steps"]) == ("interrupted", "validation", 2)

    done = tunelab(home, "train", cfg, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (summary(tmp_path)["status"], summary(tmp_path)["steps"]) == ("completed", 4)
    validated = [e["step"] for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                 if e.get("split") == "validation"]
    assert validated == [2, 4]


def test_sigint_in_data_preparation_stops_at_once(tmp_path, tiny_model_dir):
    home, cfg = tmp_path / "home", config(tmp_path, tiny_model_dir)
    rc, err, took = signal_in("data", signal.SIGINT, ["train", cfg], home)
    assert rc == 130 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: interrupted during data"


def test_sigterm_in_eval_keeps_finished_batches(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    argv = ["eval", "--model", tiny_model_dir, "--task", held_out_task(tmp_path), "--batch-size", "2",
            "--bootstrap", "10", "--output", tmp_path / "eval"]
    rc, err, took = signal_in("eval", signal.SIGTERM, argv, home, nth=2)
    assert rc == 143 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: terminated during eval"
    # The finished batch is in the evaluation cache (a rerun reuses it: test_run_faults.py's
    # test_ctrl_c_during_eval_keeps_every_finished_batch); no results.json claims a whole run.
    assert list((home / "eval-cache").glob("*.jsonl")) and not (tmp_path / "eval" / "results.json").exists()


def test_sigint_in_compare_scoring_keeps_finished_batches(tmp_path, tiny_model_dir):
    home, cfg = tmp_path / "home", config(tmp_path, tiny_model_dir, max_steps=2)
    assert tunelab(home, "train", cfg).returncode == 0
    run, out = tmp_path / "runs" / "run", tmp_path / "compared"
    argv = ["compare", run, "--task", held_out_task(tmp_path), "--batch-size", "2", "--bootstrap", "10",
            "--output", out]
    rc, err, took = signal_in("compare", signal.SIGINT, argv, home, nth=2)
    assert rc == 130 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: interrupted during compare"
    assert not (run / "eval" / "results.json").exists() and not (out / "compare.json").exists()

    done = tunelab(home, *argv)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "compare.json").exists()
    scored = json.loads((run / "eval" / "results.json").read_text())
    assert scored["tasks"]["held"]["cache"]["hits"] >= 2  # the batch finished before the signal


def test_sigterm_in_a_study_stops_its_system_and_resume_keeps_the_finished_ones(tmp_path, tiny_model_dir):
    home = tmp_path / "home"
    raw = toy_config(tmp_path, tiny_model_dir, name="study", n=24, max_steps=2, batch_size=4, checkpoint_every=1)
    raw["forgetting"] = {"tasks": ["toy", str(held_out_task(tmp_path))], "limit": 6, "batch_size": 2,
                         "bootstrap_resamples": 10}
    raw["study"] = {"methods": {"lora": [5e-3, 1e-2]}}
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    # Two training steps per system: the third step line is the second system's first step.
    rc, err, took = signal_in("training", signal.SIGTERM, ["train", cfg], home, nth=3)
    assert rc == 143 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: terminated during training at step 1; continue with --resume"
    root = tmp_path / "runs" / "study"
    first, second = root / "runs" / "lora-lr0.005", root / "runs" / "lora-lr0.01"
    kept = (first / "metrics.jsonl").stat().st_mtime_ns
    s = json.loads((second / "summary.json").read_text())
    assert (s["status"], s["phase"], s["steps"]) == ("terminated", "training", 1)
    assert not (root / "compare.json").exists()

    done = tunelab(home, "train", cfg, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (first / "metrics.jsonl").stat().st_mtime_ns == kept  # the finished system is not trained again
    assert json.loads((second / "summary.json").read_text())["status"] == "completed"
    assert json.loads((root / "compare.json").read_text())["runs"] == ["base", "lora-lr0.005", "lora-lr0.01"]


def test_a_start_killed_in_the_scoring_before_training_still_counts_in_the_run_time(tmp_path, tiny_model_dir):
    # slow_phase.py: each scoring batch takes over 1 s, and the heartbeat records the time every 0.5 s.
    home, cfg = tmp_path / "home", config(tmp_path, tiny_model_dir, forgetting=True, max_steps=2)
    rc, err, _ = signal_in("pre_scoring", signal.SIGKILL, ["train", cfg], home, nth=3)  # two batches done
    assert rc == -signal.SIGKILL, err
    s = summary(tmp_path)
    assert s["status"] == "running" and s["phase_s"]["pre_scoring"] >= 1.5 and s["wall_s"] >= 2.0, s

    done = tunelab(home, "train", cfg, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    s = summary(tmp_path)
    assert s["status"] == "completed" and len(s["wall_s_per_start"]) == 2, s
    assert s["wall_s_per_start"][0] >= 2.0 and s["phase_s"]["pre_scoring"] >= 1.5
    assert s["wall_s"] == round(sum(s["wall_s_per_start"]), 3)


def test_sigint_while_a_checkpoint_is_written_finishes_it_and_stops_there(tmp_path, tiny_model_dir):
    home, cfg = tmp_path / "home", config(tmp_path, tiny_model_dir)  # checkpoints at steps 2 and 4
    rc, err, took = signal_in("saving", signal.SIGINT, ["train", cfg], home)
    assert rc == 130 and took < STOP_WITHIN_S, err
    assert last_line(err) == "tunelab: interrupted during saving at step 2; continue with --resume"
    run = tmp_path / "runs" / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-2"]  # whole, and no temp folder
    assert (summary(tmp_path)["status"], summary(tmp_path)["phase"]) == ("interrupted", "saving")

    done = tunelab(home, "train", cfg, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step-2" in done.stderr and (summary(tmp_path)["status"], summary(tmp_path)["steps"]) == ("completed", 4)
