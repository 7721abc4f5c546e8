"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

Layout of `checkpoints/step-N/`:
  trainable.safetensors   every trainable parameter (the adapter, or the whole model for `full`)
  optimizer.safetensors   optimizer state tensors, keyed "<param index>/<name>"
  rng-rank<R>.safetensors torch CPU (and CUDA) generator states of process R
  rng-rank<R>.json        python and numpy generator states of process R
  state.json              step, epoch, position in the epoch, scheduler, early-stopping state,
                          optimizer hyperparameters and scalar state; written last

A checkpoint is written under a temporary name and renamed into place, so a run killed while
saving leaves only a `.tmp-*` folder behind (ignored and removed on resume) and the previous
checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STEP_DIR = re.compile(r"^step-(\d+)$")


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def optimizer_to_files(optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_files(tensors: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


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
    save_file(tensors, str(tmp / f"rng-rank{rank}.safetensors"))
    _write_json(tmp / f"rng-rank{rank}.json", meta)


def write_checkpoint(folder: Path, step: int, model, optimizer, state: dict) -> Path:
    """Main process: weights, optimizer, state.json, then the atomic rename to step-N."""
    tmp = temp_dir(folder, step)
    weights = tmp / "trainable.safetensors"
    save_file(trainable_state(model), str(weights))
    opt_tensors, opt_meta = optimizer_to_files(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    _write_json(tmp / "optimizer.json", opt_meta)
    _write_json(tmp / "state.json", state)
    for f in tmp.iterdir():
        _fsync(f)
    final = folder / f"step-{step}"
    if final.exists():  # re-saving the same step (e.g. resume of a finished run)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(folder)
    return final


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.exists():
        return []
    found = []
    for p in folder.iterdir():
        m = STEP_DIR.match(p.name)
        if m and (p / "state.json").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def remove_temp_dirs(folder: Path) -> None:
    if folder.exists():
        for p in folder.glob(".tmp-step-*"):
            shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(path: Path, model, optimizer, rank: int) -> dict:
    """Restore weights, optimizer and this process's RNG; return state.json."""
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise ValueError(f"{path}: checkpoint has parameters this model lacks: {missing[:3]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    meta = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(optimizer_from_files(load_file(str(path / "optimizer.safetensors")), meta))
    rng_file = path / f"rng-rank{rank}.safetensors"
    if not rng_file.exists():
        raise ValueError(f"{path}: no RNG state for process {rank}; resume with the same number of processes")
    restore_rng(load_file(str(rng_file)), json.loads((path / f"rng-rank{rank}.json").read_text()))
    return json.loads((path / "state.json").read_text())


def prune(folder: Path, keep_last: int, keep_steps: set[int]) -> None:
    """Keep the newest `keep_last` checkpoints and the steps in keep_steps (the best one)."""
    found = list_checkpoints(folder)
    recent = {s for s, _ in found[-keep_last:]}
    for step, path in found:
        if step not in recent and step not in keep_steps:
            shutil.rmtree(path, ignore_errors=True)
