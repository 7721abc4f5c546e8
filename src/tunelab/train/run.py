"""The run folder: a transaction that one process owns at a time.

<output_dir>/<name>/
  .lock  config.resolved.yaml  env.json  train_keys.json  metrics.jsonl  summary.json
  checkpoints/step-N/  final/

- `RunLock`: an exclusive `flock` on `.lock`, held while a process trains. The kernel releases it
  when the process dies however it dies (kill -9 included), so a crashed run never blocks its own
  resume, while a second `train` or `--resume` on a live run is refused, naming the process.
- `check_new_run`: a new start refuses a folder that holds a run (checkpoints or a final model);
  a folder left by a start that failed before its first checkpoint is replaced, with a message.
- `MetricsLog`: append-only JSON lines; on resume, lines after the checkpoint and a torn last
  line (a crash while writing) are dropped, each with a message.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tunelab.config.base import ConfigError, check_path_name
from tunelab.files import DiskFull, append_jsonl, read_jsonl, to_jsonable, write_bytes, write_json, write_jsonl
from tunelab.runfolder import RunFolder

LOCK_FILE = ".lock"


def run_dir(cfg) -> Path:
    check_path_name(cfg.name, "name")
    out = Path(cfg.output_dir)
    if not out.is_absolute():
        out = Path(cfg.config_dir) / out
    return out / cfg.name


class RunInUse(ConfigError):
    """Another live process holds the run folder."""


class RunLock:
    """An exclusive lock on <run>/.lock for the life of this object (or of the process)."""

    def __init__(self, run: Path):
        import fcntl

        self.path = run / LOCK_FILE
        run.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 4096, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(self.fd)
            raise RunInUse(f"{run} is in use by {holder}; wait for it to finish (or stop it) before "
                           f"training or resuming this run") from None
        os.ftruncate(self.fd, 0)
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
        os.pwrite(self.fd, (f"process {os.getpid()} on {socket.gethostname()} "
                            f"(since {time.strftime('%Y-%m-%d %H:%M:%S')}: {command})\n").encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


def check_new_run(run: Path) -> None:
    """Before a new (not resumed) start: refuse a folder that holds a run."""
    if not run.exists():
        return
    if RunFolder.of(run).holds_a_run():
        raise ConfigError(f"{run} already holds a run; pass --resume to continue it, or choose another "
                          f"name (name=... on the command line)")


def clear_failed_start(run: Path, log) -> None:
    """A folder with files but no checkpoint and no final model: a start that failed. Replace it."""
    leftovers = [p for p in run.iterdir() if p.name != LOCK_FILE] if run.exists() else []
    if not leftovers:
        return
    status = RunFolder.of(run).summary().get("status", "no summary")
    log(f"tunelab: {run} held a start that ended before its first checkpoint ({status}); replacing it")
    for p in leftovers:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def git_commit(folder: str) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(cfg, seed: int, world_size: int) -> dict:
    versions = {}
    for pkg in ("tunelab", "torch", "transformers", "peft", "accelerate", "safetensors", "numpy"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "seed": seed,
        "git_commit": git_commit(cfg.config_dir) or git_commit(str(Path(__file__).parent)),
        "processes": world_size,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "argv": sys.argv,
    }


class MetricsLog:
    """metrics.jsonl: one JSON object per event, appended and flushed at once."""

    def __init__(self, path: Path, enabled: bool):
        self.path = path
        self.enabled = enabled

    def recover(self, step: int, message, validated_step: int | None = None) -> None:
        """On resume: keep the events up to the checkpoint's step; drop torn lines, saying so.

        step 0 (no checkpoint) starts the log afresh. A validation at the checkpoint's own step that
        the checkpoint does not record (`validated_step`: the epoch-end and final validations run
        after their step's checkpoint) is dropped: the resumed run validates that step again."""
        if not self.enabled or not self.path.exists():
            return
        lines = read_jsonl(self.path)
        for number in lines.torn:
            message(f"tunelab: {self.path}: line {number} is not complete JSON (written when the run "
                    f"stopped); dropped")
        kept = [e for e in lines.rows if step > 0 and isinstance(e, dict) and e.get("step", 0) <= step
                and not (e.get("split") == "validation" and e.get("step") == step and validated_step is not None
                         and validated_step != step)]
        write_jsonl(self.path, kept)

    def write(self, event: dict) -> None:
        if self.enabled:
            append_jsonl(self.path, [event])


SUMMARY_BLOCK = 4096  # file-system block size: what an in-place rewrite can reuse without new space
SUMMARY_SLACK = 1024  # room for the error message the last rewrite may add


def write_summary(run: Path, summary: dict) -> None:
    """summary.json, atomically; on a full disk, rewritten in place so that it still records the failure.

    The file is padded with spaces (valid JSON) to whole blocks with some slack, so a rewrite in
    place reuses the blocks the file already has: it needs no free space."""
    path = run / "summary.json"
    data = (json.dumps(to_jsonable(summary), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    size = -(-(len(data) + SUMMARY_SLACK) // SUMMARY_BLOCK) * SUMMARY_BLOCK
    data += b" " * (size - len(data) - 1) + b"\n"
    try:
        with SUMMARY_WRITE:  # never two writers at once (the heartbeat thread)
            write_bytes(path, data)
    except DiskFull:
        if not path.exists() or path.stat().st_size < len(data.rstrip()):
            raise
        with open(path, "r+b") as f:
            f.write(data.rstrip() + b"\n")
            f.truncate()
            f.flush()
            os.fsync(f.fileno())


def run_summary(state, status: str | None = None) -> dict:
    """What summary.json says about a run (state: tunelab.train.state.TrainState)."""
    from tunelab.train.compile import compiled_layers

    t, c = state.cfg.train, state.counters
    best = c.best
    return {
        "status": status or c.status, "phase": None if status else getattr(state, "stopped_in", None),
        "error": state.error, "method": t.method, "base_model": state.cfg.model.name,
        "precision": state.precision, "architecture": state.architecture,
        "attention": getattr(state.model.config, "_attn_implementation", None),
        "compiled": compiled_layers(state.model), "steps": c.step,
        "total_steps": state.total_steps, "epochs_completed": c.epoch, **run_time(state),
        "train_tokens": c.train_tokens, "trainable_params": state.n_trainable, "total_params": state.n_total,
        "peak_rss_mb": round(peak_rss_mb(), 1), "peak_rss_mb_per_process": state.process_rss_mb, "best": best,
        "best_val_loss": best["value"] if best and best["metric"] == "val_loss" else None,
        "best_checkpoint": f"checkpoints/step-{best['step']}" if best else None,
        "processes": state.world, "data_counts": getattr(state.data, "report", None),
    }


def earlier_time(run: Path) -> dict:
    """What the run's earlier starts (processes) spent, from the summary.json the last one left:
    also a start killed with -9 left its time there, up to its last checkpoint or heartbeat."""
    old = RunFolder.of(run).summary()
    per_start = old.get("wall_s_per_start")
    if per_start is None:  # a summary from before the per-start record: one start
        per_start = [old["wall_s"]] if old.get("wall_s") else []
    return {"wall_s_per_start": [float(s) for s in per_start], "phase_s": dict(old.get("phase_s") or {})}


def run_time(state) -> dict:
    """summary.json's time: wall_s over every start of the run (each process that trained it:
    the first, and every --resume), each start's, and phase_s, where the time went (progress.PHASES)."""
    from tunelab.train.progress import PHASES, clock_of

    clock = clock_of(state)
    if clock is None:  # no progress display yet: this start's wall time only
        return {"wall_s": round(time.perf_counter() - state.started, 3) if state.started else 0.0}
    if clock.earlier is None:  # read once, before this start's first summary replaces the last one's
        clock.earlier = earlier_time(state.run)
    per_start = [*clock.earlier["wall_s_per_start"], round(clock.elapsed(), 3)]
    now = clock.so_far()
    phases = {k: round(clock.earlier["phase_s"].get(k, 0.0) + now[k], 3) for k in PHASES}
    return {"wall_s": round(sum(per_start), 3), "wall_s_per_start": per_start, "phase_s": phases}


HEARTBEAT_S = 30.0  # at most this much of a killed start's time is missing from summary.json
SUMMARY_WRITE = threading.RLock()  # the heartbeat thread and the main thread both write summary.json


def record_time(state) -> None:
    """Rewrite summary.json ("running") with the time so far (at each checkpoint and heartbeat),
    so that a start killed with -9 still counts in the run's wall_s. A failed write is left to
    the checkpoint or the end of the run to report."""
    from tunelab.train.progress import clock_of

    if not state.main or clock_of(state) is None:
        return
    with SUMMARY_WRITE:
        try:
            write_summary(state.run, run_summary(state, status="running"))
        except (OSError, DiskFull):
            pass


@contextlib.contextmanager
def heartbeat(state, every_s: float | None = None):
    """While inside, a thread records the run's time every `every_s` seconds (record_time), also
    through phases that check nothing for minutes: a model load, the forgetting section's scoring,
    a long validation. It stops, and is joined, before the block's end, so no beat can land after
    the summary the run ends with."""
    if not state.main:
        yield
        return
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every_s or HEARTBEAT_S):
            record_time(state)

    thread = threading.Thread(target=beat, name="tunelab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def reset_peak_rss() -> None:
    """Start this run's peak-memory count afresh (Linux: the process's high-water mark, VmHWM).
    Without it, the second run in one process (a study's systems, continual stages, search
    trials) would report the largest earlier run's peak as its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak stays the process's


def peak_rss_mb() -> float:
    """Peak resident memory since reset_peak_rss() (VmHWM), else of the whole process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


__all__ = ["MetricsLog", "RunInUse", "RunLock", "check_new_run", "clear_failed_start", "environment", "heartbeat",
           "peak_rss_mb", "record_time", "reset_peak_rss", "run_dir",
           "run_summary", "run_time", "to_jsonable", "write_json", "write_summary"]
