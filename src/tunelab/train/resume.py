"""`--resume` continues the run as it was: same config, same data, a checkpoint that verifies.

A resumed run must be the run that was started. The config given to `--resume` is compared with
the run's config.resolved.yaml: a difference in anything that shapes the steps already taken
(data, model, method, optimizer, seeds, batch shape, ...) is refused with the list of keys. Keys
that only say how long to go on, or how often to log, validate and checkpoint, may change; each
change is logged in metrics.jsonl as an event with the old and new values (docs/training.md).
The training data is compared too, by a hash of the training examples' token ids: a data file
edited since the start is refused. The number of processes may change when the global batch
(batch_size x grad_accum x processes) stays the same.

Where the run folder is (`output_dir`, and `name`, the folder's own name) is not part of the run:
a folder moved or copied elsewhere resumes there as itself, from a config whose output_dir
points at the new place, or from the folder alone (`run_folder_config`: `tunelab train RUN --resume`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunelab.config.base import ConfigError
from tunelab.models.tuners import METHODS, methods_reading
from tunelab.runfolder import RunFolder

# Dotted keys (or prefixes ending in '.') that may differ on --resume: how long, how often, where
# results go, how memory is spent without changing a number (selective_recompute). Increasing max_steps or epochs stretches the learning-rate schedule from then on.
SAFE_TO_CHANGE = (
    "train.max_steps", "train.epochs", "train.eval_every", "train.log_every", "train.checkpoint_every",
    "train.keep_last", "train.keep_best", "train.progress", "train.report_to", "train.tracker_project",
    "train.tracker_uri", "train.eval_batch_size", "train.selective_recompute",
    "forgetting.", "eval.", "output_dir", "name",
)

# Each method-options section of train: and the methods that read it (tunelab.models.tuners).
METHOD_OPTIONS = {section: methods_reading(section) for m in METHODS.values() for section in m.options}


def flatten(data, prefix: str = "") -> dict:
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def safe_to_change(key: str) -> bool:
    return any(key == s or (s.endswith(".") and key.startswith(s)) for s in SAFE_TO_CHANGE)


def config_changes(run: Path, cfg) -> dict[str, dict]:
    """Keys whose value differs from the run's config.resolved.yaml: {key: {"old", "new"}}."""
    folder = RunFolder.of(run)
    if not folder.has_config():
        raise ConfigError(f"{run}: no config.resolved.yaml, so there is no run to resume; start it without --resume")
    # The resolved file was written from the same JSON dump, so both sides hold lists and text keys.
    saved = flatten(folder.config)
    current = flatten(json.loads(cfg.model_dump_json()))
    keys = sorted(set(saved) | set(current))
    return {k: {"old": saved.get(k), "new": current.get(k)} for k in keys if saved.get(k) != current.get(k)}


def check_resume_config(run: Path, cfg, step: int | None = None, world: int | None = None) -> dict[str, dict]:
    """Refuse a --resume whose config differs in keys that shaped the run; return the safe changes.
    `world`: the number of processes resuming (None: not checked)."""
    changes = config_changes(run, cfg)
    # Options of a method the run does not use shaped nothing (e.g. train.ia3.* in a LoRA run).
    unused = [f"train.{o}." for o in METHOD_OPTIONS if cfg.train.method not in METHOD_OPTIONS[o]]
    reshaped = check_global_batch(run, cfg, changes, world) if world is not None else ()
    refused = {k: v for k, v in changes.items()
               if not safe_to_change(k) and not k.startswith(tuple(unused)) and k not in reshaped}
    if refused:
        listed = "; ".join(f"{k}: {v['old']!r} -> {v['new']!r}" for k, v in list(refused.items())[:8])
        more = f" (and {len(refused) - 8} more)" if len(refused) > 8 else ""
        raise ConfigError(f"--resume: the config differs from the run's ({run / 'config.resolved.yaml'}) in {listed}"
                          f"{more}. A resumed run keeps its config; start a new run (name=...) to change these. "
                          f"Keys that may change on resume: {', '.join(SAFE_TO_CHANGE)}")
    new_max = changes.get("train.max_steps", {}).get("new")
    if step is not None and new_max is not None and new_max < step:
        raise ConfigError(f"--resume: train.max_steps={new_max} is below the step the run has reached ({step})")
    return changes


BATCH_SHAPE = ("train.batch_size", "train.grad_accum")


def check_global_batch(run: Path, cfg, changes: dict, world: int) -> tuple[str, ...]:
    """A run may resume on another number of processes when its global batch (batch_size x
    grad_accum x processes) stays the same: the steps then see the same examples (batching.py
    plans global batches first). Returns the batch-shape keys that may differ; refuses otherwise."""
    env = RunFolder.of(run).env()
    if not env:
        return ()
    old_world = env.get("processes", 1)
    if old_world == world and not any(k in changes for k in BATCH_SHAPE):
        return ()
    t = cfg.train
    old = {k: changes[k]["old"] if k in changes else getattr(t, k.split(".")[1]) for k in BATCH_SHAPE}
    old_global = old["train.batch_size"] * old["train.grad_accum"] * old_world
    new_global = t.batch_size * t.grad_accum * world
    if old_global != new_global:
        if any(k in changes for k in BATCH_SHAPE):
            return ()  # refused with the other changed keys
        raise ConfigError(
            f"--resume: the global batch would change from {old_global} (batch_size {old['train.batch_size']} x "
            f"grad_accum {old['train.grad_accum']} x {old_world} processes) to {new_global} (batch_size "
            f"{t.batch_size} x grad_accum {t.grad_accum} x {world} processes); keep it at {old_global}, e.g. "
            f"train.batch_size and train.grad_accum with a product of {old_global / world:g} on {world} processes")
    return BATCH_SHAPE


def run_folder_config(folder: Path, overrides=()):
    """The config that resumes the run in `folder` where the folder is now: its config.resolved.yaml
    with output_dir and name from the folder's place, relative data paths resolved as the run's
    first start resolved them (env.json's config_dir), then `overrides` (key=value)."""
    from tunelab.config import load_config
    from tunelab.config.load import apply_overrides

    folder = Path(folder).resolve()
    run = RunFolder.of(folder)
    if not run.has_config():
        raise ConfigError(f"{folder}: not a run folder (no config.resolved.yaml); give the experiment YAML instead")
    raw = dict(run.config)
    parts = [k for k in ("stages", "search", "study", "seeds") if raw.get(k)]
    if parts:
        raise ConfigError(f"{folder}: this run is part of an experiment ({', '.join(parts)}); resume the "
                          f"experiment with its own YAML")
    raw = apply_overrides({**raw, "output_dir": str(folder.parent), "name": folder.name}, overrides)
    cfg = load_config(data=raw)
    env = run.env()
    cfg.config_dir = env.get("config_dir") or str(folder)
    return cfg


def data_fingerprint(data) -> str:
    """A hash of every training example's token ids and labels, task by task, in split order."""
    h = hashlib.sha256()
    for name in sorted(data.tasks):
        h.update(name.encode())
        split = data.tasks[name].splits["train"]
        if hasattr(split, "label_chunks"):  # an ExampleTable (data/table.py): read from its columns
            _hash_columns(h, split)
            continue
        for ex in split:
            h.update(json.dumps([ex.input_ids, ex.label_ids]).encode())
            if getattr(ex, "rejected_ids", None) is not None or getattr(ex, "desirable", None) is not None:
                h.update(json.dumps([ex.rejected_ids, ex.desirable]).encode())  # preference data (#24)
    return h.hexdigest()


def _hash_columns(h, table) -> None:
    """The same bytes as the loop over Examples (runs started before the cache must resume, #25),
    from the token columns a chunk at a time: building every Example would read each row's texts
    too and allocate a million of them. Table rows are never preference examples (no rejected_ids)."""
    for ends, ids, labels in table.label_chunks():
        ids, labels, start = ids.tolist(), labels.tolist(), 0
        for end in ends.tolist():
            h.update(json.dumps([ids[start:end], labels[start:end]]).encode())
            start = end


def check_resume_data(run: Path, fingerprint: str) -> None:
    saved = RunFolder.of(run).env().get("data_fingerprint")
    if saved and saved != fingerprint:
        raise ConfigError(f"--resume: the training data differs from the data {run} was trained on (a data file "
                          f"changed since the run started); restore it, or start a new run (name=...)")
