"""Where a number comes from: the model's identity, and the contamination guard.

- `model_identity(spec)`: SHA-256 of every weights/config file of the base model and the adapter
  (or the hub id and revision), for results.json. Hashes are kept in TUNELAB_HOME/hashes keyed by
  path, size and mtime, so a 500 MB model is read once, not at every evaluation.
- `training_runs(spec)` / `overlap(...)`: a tuned model must not be scored on its own training
  examples as if they were test data. Every run folder holds train_keys.json (hashes of its
  training inputs, tunelab.data.leakage.content_key); a model trained from another run's output
  (a continual stage, a merged adapter) inherits that run's keys too. An evaluation that would
  score such examples is refused unless the caller allows it, and the overlap is always reported.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunelab.config.base import UserError
from tunelab.config.env import tunelab_home
from tunelab.data.cache import file_hash
from tunelab.files import write_json
from tunelab.runfolder import RunFolder

IDENTITY_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".gguf", ".txt", ".jinja")


def _hash_file(path: Path) -> str:
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    memo = tunelab_home() / "hashes" / f"{key}.json"
    if memo.exists():
        try:
            return json.loads(memo.read_text(encoding="utf-8"))["sha256"]
        except (OSError, ValueError, KeyError):
            pass
    digest = file_hash(path)  # the one hasher (data/cache.py); this memo keeps it across processes
    write_json(memo, {"path": str(path.resolve()), "sha256": digest})
    return digest


def folder_identity(path_or_id: str | None, revision: str | None = None) -> dict | None:
    """{"path", "files": {name: sha256}} for a local folder; {"id", "revision"} for a hub id."""
    if path_or_id is None:
        return None
    p = Path(path_or_id)
    if not p.exists():
        return {"id": str(path_or_id), "revision": revision}
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in IDENTITY_SUFFIXES) if p.is_dir() else [p]
    return {"path": str(p.resolve()), "files": {f.name: _hash_file(f) for f in files}}


def model_identity(spec) -> dict:
    from tunelab.models import resolve_model

    weights = spec.full_model or resolve_model(spec.base)
    return {"base": spec.base, "weights": folder_identity(weights), "adapter": folder_identity(spec.adapter),
            "dtype": spec.dtype}


def training_runs(spec) -> list[Path]:
    """Every run whose training examples this model has seen: its own, and the runs it started
    from (RunFolder.parent), recursively."""
    start = [RunFolder.of(spec.run)] if spec.run else [RunFolder.enclosing(p) for p in
                                                       (spec.adapter, spec.full_model, spec.base)]
    todo, found = [r for r in start if r is not None], []
    while todo:
        run = todo.pop()
        if run.path.resolve() in [f.resolve() for f in found] or run.train_keys() is None:
            continue
        found.append(run.path)
        parent = run.parent()
        if parent is not None:
            todo.append(parent)
    return found


def training_keys(runs: list[Path]) -> dict[str, str]:
    """content key -> the run that trained on it."""
    keys: dict[str, str] = {}
    for run in runs:
        data = RunFolder.of(run).train_keys() or {}
        for task_keys in data.get("tasks", {}).values():
            for k in task_keys:
                keys.setdefault(k, str(run))
    return keys


def overlap_report(examples, keys: dict[str, str], runs: list[Path]) -> dict:
    hits = [ex for ex in examples if ex.content_key in keys]
    return {"checked_against": [str(r) for r in runs], "overlap": len(hits), "n": len(examples),
            "examples": [ex.source for ex in hits[:5]],
            "runs": sorted({keys[ex.content_key] for ex in hits})}


ALLOW_EVAL = "pass --allow-train-overlap (eval.allow_train_overlap: true)"


def refuse_overlap(task: str, split: str, report: dict, how_to_allow: str = ALLOW_EVAL) -> None:
    raise UserError(
        f"task '{task}': {report['overlap']} of {report['n']} {split} examples are training examples of "
        f"{', '.join(report['runs'])} (e.g. {', '.join(report['examples'][:2])}); scoring them as test data "
        f"would report memorisation as skill. Score the run's own task by its bare name (it uses the run's "
        f"split; data.leak_check: remove drops inputs duplicated across splits), or {how_to_allow} to score "
        f"them anyway (the overlap is reported)")


def keys_digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()
