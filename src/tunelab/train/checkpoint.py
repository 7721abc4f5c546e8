"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

Layout of `checkpoints/step-N/`:
  trainable.safetensors   every trainable parameter (the adapter, or the whole model for `full`)
  optimizer.safetensors   optimizer state tensors, keyed "<param index>/<name>"
  rng-rank<R>.safetensors torch CPU (and CUDA) generator states of process R
  rng-rank<R>.json        python and numpy generator states of process R
  state.json              step, epoch, position in the epoch, scheduler, early-stopping state,
                          optimizer hyperparameters and scalar state
  manifest.json           SHA-256 and size of every other file; written last

Under FSDP (train.distributed.strategy=fsdp) trainable.safetensors and optimizer.safetensors are
replaced by `sharded/`: each process's shards of both, written by every process at once through
torch.distributed.checkpoint (train/distributed.py); optimizer.json is keyed by parameter name.
Such a checkpoint resumes on any number of processes, with or without FSDP.

A checkpoint is written under a temporary name and renamed into place, so a run killed while
saving leaves only a `.tmp-*` folder behind (ignored and removed on resume) and the previous
checkpoint intact. `--resume` verifies the manifest of the newest checkpoint; a damaged one (a
truncated file, a flipped bit, a missing file) is reported by file name and the previous good
checkpoint is used instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tunelab.config.base import ConfigError
from tunelab.files import disk_errors
from tunelab.train.distributed import SHARDED_DIR, is_sharded, load_sharded, save_sharded
from tunelab.train.optimizer_state import join_optimizer_state, split_optimizer_state

STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def optimizer_to_files(optimizer) -> tuple[dict, dict]:
    tensors, meta = split_optimizer_state(optimizer.state_dict())
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta


def optimizer_from_files(tensors: dict, meta: dict) -> dict:
    return join_optimizer_state(tensors, meta)


def rng_to_files() -> tuple[dict, dict]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}
    return tensors, meta


def restore_rng(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
        if states:
            torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _write_json(path: Path, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_dir(folder: Path, step: int) -> Path:
    return folder / f".tmp-step-{step}"


def write_rng(tmp: Path, rank: int) -> None:
    """Each process writes its own generator states into the checkpoint being built."""
    tensors, meta = rng_to_files()
    with disk_errors(tmp):
        save_file(tensors, str(tmp / f"rng-rank{rank}.safetensors"))
        _write_json(tmp / f"rng-rank{rank}.json", meta)


def files_of(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file())


def write_checkpoint(folder: Path, step: int, model, optimizer, state: dict, sharded_meta: dict | None = None) -> Path:
    """Main process: weights, optimizer, state.json, the manifest, then the atomic rename to step-N.
    With `sharded_meta` (FSDP) the shards are already in the temporary folder: only the optimizer's
    non-tensor state is written beside them.

    A full disk raises DiskFull naming the file; the half-written temporary folder is removed and
    every earlier checkpoint stays as it was."""
    tmp = temp_dir(folder, step)
    try:
        with disk_errors(tmp):
            if sharded_meta is None:
                save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
                opt_tensors, opt_meta = optimizer_to_files(optimizer)
                save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            _write_json(tmp / "optimizer.json", opt_meta if sharded_meta is None else sharded_meta)
            _write_json(tmp / "state.json", state)
            files = files_of(tmp)
            for f in files:
                _fsync(f)
            _write_json(tmp / MANIFEST, {"files": {f.relative_to(tmp).as_posix(): file_digest(f) for f in files}})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = folder / f"step-{step}"
    if final.exists():  # re-saving the same step (e.g. resume of a finished run)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(folder)
    return final


def file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def damage(path: Path) -> str | None:
    """What is wrong with a checkpoint folder (None when every file matches its manifest)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"{MANIFEST} is missing (the save did not finish)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for name, expected in manifest.items():
        f = path / name
        if not f.exists():
            return f"{name} is missing"
        if f.stat().st_size != expected["bytes"]:
            return f"{name} has {f.stat().st_size} bytes, expected {expected['bytes']} (truncated?)"
        if file_digest(f)["sha256"] != expected["sha256"]:
            return f"{name} does not match its checksum"
    return None


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.exists():
        return []
    found = []
    for p in folder.iterdir():
        m = STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def latest_good_checkpoint(folder: Path, message) -> Path | None:
    """The newest checkpoint whose files match their manifest; each damaged newer one is reported,
    and so is the one used instead."""
    damaged = False
    for _, path in reversed(list_checkpoints(folder)):
        problem = damage(path)
        if problem is None:
            if damaged:
                message(f"tunelab: falling back to checkpoint {path} (the newest that verifies)")
            return path
        damaged = True
        message(f"tunelab: checkpoint {path} is damaged ({problem}); trying the one before it")
    if damaged:
        message(f"tunelab: no checkpoint in {folder} verifies")
    return None


def remove_temp_dirs(folder: Path) -> None:
    if folder.exists():
        for p in folder.glob(".tmp-step-*"):
            shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: Path, loss_model, model, optimizer, rank: int, seed: int) -> dict:
    """Restore weights, optimizer and this process's RNG; return state.json."""
    if (path / SHARDED_DIR).exists():
        load_sharded(path, loss_model, optimizer)
    elif is_sharded(loss_model):
        raise ConfigError(f"{path} was written without FSDP; resume it with train.distributed.strategy=ddp")
    else:
        load_whole(path, model, optimizer)
    state = json.loads((path / "state.json").read_text())
    rng_file = path / f"rng-rank{rank}.safetensors"
    if rng_file.exists():
        restore_rng(load_file(str(rng_file)), json.loads((path / f"rng-rank{rank}.json").read_text()))
    else:  # more processes than the run had: a new process starts its generators from the seed
        set_all_seeds(seed + 1_000_003 * state["step"] + rank)
    return state


def set_all_seeds(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_whole(path: Path, model, optimizer) -> None:
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise ConfigError(f"{path}: the checkpoint has parameters this model lacks ({', '.join(missing[:3])}): "
                          f"it was written by another model or method")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    meta = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(optimizer_from_files(load_file(str(path / "optimizer.safetensors")), meta))


def prune(folder: Path, keep_last: int, keep_steps: set[int]) -> None:
    """Keep the newest `keep_last` checkpoints and the steps in keep_steps (the best one)."""
    found = list_checkpoints(folder)
    recent = {s for s, _ in found[-keep_last:]}
    for step, path in found:
        if step not in recent and step not in keep_steps:
            shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(state) -> None:
    """Checkpoint the run at its current step (once per step): every process writes its RNG state
    into the folder being built (and, under FSDP, its shards), then the main process writes the rest
    and renames it into place. summary.json then gets the run's time so far (run.record_time)."""
    from tunelab.train.progress import phase
    from tunelab.train.run import record_time

    if state.saved_step == state.counters.step:
        return
    with phase(state, "saving"):
        write_step_checkpoint(state)
    record_time(state)


def write_step_checkpoint(state) -> None:
    step = state.counters.step
    state.saved_step = step
    tmp = temp_dir(state.ckpt_dir, step)
    if state.main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    state.accelerator.wait_for_everyone()
    try:
        write_rng(tmp, state.rank)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sharded_meta = None
    if state.sharded_checkpoints:
        try:
            sharded_meta = save_sharded(tmp, state.loss_model, state.optimizer)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    state.accelerator.wait_for_everyone()
    if state.main:
        payload = {**state.counters.__dict__, "scheduler": state.scheduler.state_dict(),
                   "total_steps": state.total_steps, "processes": state.world}
        if state.scaler is not None:
            payload["scaler"] = state.scaler.state_dict()
        write_checkpoint(state.ckpt_dir, step, state.model, state.optimizer, payload, sharded_meta)
        best = state.counters.best
        keep = {best["step"]} if best and state.cfg.train.keep_best else set()
        prune(state.ckpt_dir, state.cfg.train.keep_last, keep)
    state.accelerator.wait_for_everyone()
