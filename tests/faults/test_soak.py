"""A seeded random-kill soak: one tiny-model run killed with SIGKILL at 20+ points, resumed each time.

The run (LoRA with dropout, a shuffled order, a checkpoint every 2 steps, validation every 4 steps
and at the end, the best checkpoint kept) is killed at points drawn from a seeded generator: right
after the start (also before the first checkpoint), inside a step (after backward, before the
optimizer step), after a step is logged, inside a validation (computed, not logged), after a
validation is logged (before its checkpoint), in the middle of a checkpoint's safetensors write
(half of the file on disk), after a checkpoint is renamed into place (before old ones are pruned),
and after the final model is written (summary.json not yet "completed"). Epochs end at steps 10, 20,
30 and 40, so some kills also fall after an epoch's end-of-epoch validation. Each time `tunelab train CONFIG --resume` continues. At the
end the run must be the uninterrupted run, bit for bit: the same step lines (loss, lr, grad_norm,
tokens, ...), the same validation events, the same final weights, and summary.json counts every
start in wall_s_per_start.

Speed: a new Python process imports torch, transformers and peft in ~5 s, 25 of them would cost
two minutes. So each start is a fork of this (already importing) test process that calls the CLI's
`main(argv)` as `tunelab` would, with the kill hook installed in the child; the child ends with
os._exit and the parent only waits for it. A kill -9 of a forked child leaves on disk exactly
what it leaves of a new process. The last resume is a real `tunelab` process, as a user runs it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from fault_helpers import tunelab_command

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import toy_config  # noqa: E402

SEED = 20261
STEPS = 42
CHECKPOINT_EVERY = 2
EVAL_EVERY = 4  # 42 is not a multiple: the last validation comes after the loop, after step-42's checkpoint
TIMING = {"tokens_per_s", "step_s", "elapsed_s"}  # the only fields of an event that may differ

# kind: at which steps it can happen (None: any)
KINDS = {
    "start": None,        # right after setup: the run folder is open, no step taken yet
    "in_step": None,      # step N: after backward, before the optimizer step
    "after_step": None,   # step N is logged, its validation/checkpoint not yet done
    "in_val": "val",      # validation at step N computed, not logged
    "after_val": "val",   # validation at step N logged, its (best/periodic) checkpoint not written
    "in_save": "ckpt",    # the k-th safetensors file of checkpoint step-N half written (rng, weights, optimizer)
    "before_prune": "ckpt",  # step-N renamed into place, older checkpoints not yet pruned
}


def env() -> dict:
    out = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out.pop("TUNELAB_DEBUG", None)
    return out


def kill_plan(seed: int = SEED) -> list[tuple[str, int, int]]:
    """(kind, step, file index) for each kill, in order; steps increase, so every kill point lies
    after the checkpoint the previous kill leaves the run at, and is reached."""
    rng = random.Random(seed)
    # Before the first checkpoint: killed at once, after step 1, then in the first checkpoint's write.
    plan = [("start", 0, 0), ("after_step", 1, 0), ("in_save", CHECKPOINT_EVERY, rng.randint(1, 3))]
    last = CHECKPOINT_EVERY
    while True:
        kind = rng.choice(list(KINDS))
        if kind == "start":
            plan.append(("start", last, 0))  # a resume killed before it takes a step
            continue
        every = {None: 1, "val": EVAL_EVERY, "ckpt": CHECKPOINT_EVERY}[KINDS[kind]]
        step = (last + 1 + rng.randint(0, 1) + every - 1) // every * every
        if step >= STEPS:
            break
        plan.append((kind, step, rng.randint(1, 3) if kind == "in_save" else 0))
        last = step
    plan.append(("final", STEPS, 0))  # final/ written, after the last validation; not yet "completed"
    return plan


def install_kill(kind: str, step: int, index: int, marker: Path) -> None:
    """Patch the training code of this (child) process to SIGKILL itself at the point."""
    import tunelab.train.checkpoint as ckpt
    import tunelab.train.loop as loop
    import tunelab.train.steps as steps
    import tunelab.train.validate as validate

    def die(state=None) -> None:
        at = state.counters.step if state is not None else "?"
        marker.write_text(f"{kind} {step} {index} at step {at}\n")
        os.kill(os.getpid(), signal.SIGKILL)

    if kind == "start":
        real_setup = loop.setup

        def setup_then_die(*args, **kwargs):
            die(real_setup(*args, **kwargs))

        loop.setup = setup_then_die
    elif kind == "in_step":
        real_fb = steps.forward_backward

        def forward_backward_then_die(state, *args, **kwargs):
            out = real_fb(state, *args, **kwargs)
            if state.counters.step + 1 == step:
                die(state)
            return out

        steps.forward_backward = forward_backward_then_die
    elif kind == "after_step":
        real_log = loop.log_step

        def log_then_die(state, event):
            real_log(state, event)
            if event["step"] == step:
                die(state)

        loop.log_step = log_then_die
    elif kind == "in_val":
        real_loss = validate.validation_loss

        def computed_then_die(state, *args, **kwargs):
            out = real_loss(state, *args, **kwargs)
            if state.counters.step == step:
                die(state)
            return out

        validate.validation_loss = computed_then_die
    elif kind == "after_val":
        real_save = ckpt.save_checkpoint

        def die_before_save(state):
            if state.counters.step == step and state.counters.validated_step == step:
                die(state)
            return real_save(state)

        ckpt.save_checkpoint = die_before_save
    elif kind in ("in_save", "before_prune"):
        real_write, real_file, real_prune = ckpt.write_step_checkpoint, ckpt.save_file, ckpt.prune
        armed = {"state": None, "files": 0}

        def write_armed(state):
            armed["state"] = state if state.counters.step == step else None
            return real_write(state)

        def half_then_die(tensors, path, *args, **kwargs):
            real_file(tensors, path, *args, **kwargs)
            if kind == "in_save" and armed["state"] is not None:
                armed["files"] += 1
                if armed["files"] == index:
                    with open(path, "r+b") as f:  # only the first half reached the disk
                        f.truncate(os.path.getsize(path) // 2)
                    die(armed["state"])

        def die_before_prune(*args, **kwargs):
            if kind == "before_prune" and armed["state"] is not None:
                die(armed["state"])
            return real_prune(*args, **kwargs)

        ckpt.write_step_checkpoint, ckpt.save_file, ckpt.prune = write_armed, half_then_die, die_before_prune
    elif kind == "final":
        real_final = loop.write_final

        def final_then_die(model, tokenizer, folder, *args, **kwargs):
            real_final(model, tokenizer, folder, *args, **kwargs)
            die()

        loop.write_final = final_then_die
    else:
        raise ValueError(kind)


def forked_tunelab(argv: list[str], log: Path, kill: tuple[str, int, int] | None = None,
                   timeout: float = 120) -> int:
    """`tunelab ARGV` in a fork of this process (stdout and stderr to LOG); its exit status, or
    -signal. With `kill`, the child SIGKILLs itself at that point."""
    marker = log.with_suffix(".killed")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        rc = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            os.environ.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
            os.environ.pop("TUNELAB_DEBUG", None)
            if kill is not None:
                install_kill(*kill, marker)
            from tunelab.cli.main import main

            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 71
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(rc)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"tunelab {' '.join(argv)} still running after {timeout} s:\n"
                                 f"{log.read_text()[-3000:]}")
        time.sleep(0.005)


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def steps_and_validations(run: Path) -> tuple[list[dict], list[dict]]:
    got = events(run)
    strip = lambda e: {k: v for k, v in e.items() if k not in TIMING}  # noqa: E731
    return ([strip(e) for e in got if "loss" in e and "split" not in e],
            [strip(e) for e in got if e.get("split") == "validation"])


def write(folder: Path, model_dir: str, name: str) -> Path:
    # LoRA dropout and a shuffled, length-grouped order: a resume must restore RNG and data position.
    raw = toy_config(folder, model_dir, name=name, max_steps=STEPS, batch_size=4, lr=1e-2,
                     checkpoint_every=CHECKPOINT_EVERY, eval_every=EVAL_EVERY, keep_last=2,
                     lora={"r": 4, "dropout": 0.1})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_plan_covers_every_kind_of_kill_point():
    plan = kill_plan()
    assert len(plan) >= 20
    assert {kind for kind, _, _ in plan} == {*KINDS, "final"}
    assert {index for kind, _, index in plan if kind == "in_save"} == {1, 2, 3}  # rng, weights, optimizer
    assert plan[:3] == [("start", 0, 0), ("after_step", 1, 0), ("in_save", 2, plan[2][2])]


def test_random_kill_soak_resumes_bit_identically(tmp_path, tiny_model_dir):
    began = time.perf_counter()
    logs = tmp_path / "logs"
    logs.mkdir()
    reference = tmp_path / "runs" / "reference"
    rc = forked_tunelab(["train", str(write(tmp_path, tiny_model_dir, "reference"))], logs / "reference.log")
    assert rc == 0, (logs / "reference.log").read_text()[-3000:]
    reference_s = time.perf_counter() - began

    config = write(tmp_path, tiny_model_dir, "soak")
    run = tmp_path / "runs" / "soak"
    plan = kill_plan()
    for number, (kind, step, index) in enumerate(plan):
        argv = ["train", str(config)] + (["--resume"] if number else [])
        log = logs / f"{number:02d}-{kind}-{step}.log"
        rc = forked_tunelab(argv, log, (kind, step, index))
        assert rc == -signal.SIGKILL, f"kill {number} ({kind} at step {step}) not reached, exit {rc}:\n" \
                                      f"{log.read_text()[-3000:]}"
        assert log.with_suffix(".killed").exists()
        err = log.read_text()
        assert "Traceback" not in err and "tunelab: error" not in err, err[-3000:]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "running"  # what kill -9 leaves
        lines, _ = steps_and_validations(run)
        assert [e["step"] for e in lines] == sorted({e["step"] for e in lines})  # no step logged twice
    # Killed before its first checkpoint, the second start began afresh: said so, not an error.
    assert "no checkpoint to resume from; starting from step 0" in (logs / "01-after_step-1.log").read_text()

    done = subprocess.run(tunelab_command() + ["train", str(config), "--resume"], capture_output=True,
                          text=True, env=env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and f"resuming {run} from checkpoint step-{STEPS}" in done.stderr

    got_steps, got_val = steps_and_validations(run)
    ref_steps, ref_val = steps_and_validations(reference)
    assert [e["step"] for e in got_steps] == list(range(1, STEPS + 1))  # every step logged once, in order
    assert [(e["loss"], e["lr"], e["grad_norm"]) for e in got_steps] == \
           [(e["loss"], e["lr"], e["grad_norm"]) for e in ref_steps]  # bit-identical floats
    assert got_steps == ref_steps  # and every other field of a step line (tokens, examples, epoch)
    a = load_file(str(run / "final" / "adapter_model.safetensors"))
    b = load_file(str(reference / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical weights

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    starts = len(plan) + 1
    per_start = summary["wall_s_per_start"]
    assert len(per_start) == starts, per_start  # every start counted, also those killed at once
    assert all(s >= 0 for s in per_start) and per_start[-1] > 0
    assert abs(summary["wall_s"] - sum(per_start)) < 0.01
    assert f"{starts} starts" in done.stderr, done.stderr[-3000:]

    # Validation: every 4 steps, at each epoch's end (steps 10 and 30: after that step's checkpoint)
    # and once more at the end (step 42, after step-42's checkpoint); the soak kills after both kinds.
    ref_at = [e["step"] for e in ref_val]
    assert set(range(EVAL_EVERY, STEPS, EVAL_EVERY)) | {STEPS} < set(ref_at) and ref_at == sorted(set(ref_at))
    twice = sorted({s for s in (e["step"] for e in got_val) if [e["step"] for e in got_val].count(s) > 1})
    assert got_val == ref_val, f"validation events differ from the uninterrupted run; logged twice at steps {twice}"
    print(f"\nsoak: {len(plan)} kills + 1 resume; reference run {reference_s:.1f} s, "
          f"all {time.perf_counter() - began:.1f} s")
