"""Result cache for evaluation: re-runs skip every model call whose answer is already known.

Key of a cache file: the model (folder path + name, size and mtime of each weights/config file, or
hub id + revision), the adapter (same fingerprint), the dtype and the scoring settings (generation
settings, or "loglikelihood"). Inside, one JSON line per scored item, keyed by a hash of its
exact token ids. Batch size is not part of the key: batching does not change outputs (tested).
Lines are appended as batches finish, so an interrupted evaluation keeps its finished work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunelab.config.env import tunelab_home
from tunelab.files import append_jsonl, write_json

FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".gguf")


def fingerprint(path_or_id: str | None, revision: str | None = None) -> dict | None:
    """Identity of a model or adapter: files' names, sizes and mtimes for a folder; else id + revision."""
    if path_or_id is None:
        return None
    p = Path(path_or_id)
    if not p.exists():
        return {"id": str(path_or_id), "revision": revision}
    files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in FINGERPRINT_SUFFIXES) if p.is_dir() else [p]
    return {"path": str(p.resolve()),
            "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


class ResultCache:
    """A dict of item key -> result backed by one append-only JSONL file (or memory only)."""

    def __init__(self, key: dict, enabled: bool = True, root: Path | None = None):
        self.key = key
        self.enabled = enabled
        self.data: dict[str, dict] = {}
        self.path = (root or tunelab_home() / "eval-cache") / f"{digest(key)}.jsonl"
        if enabled and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.data[row["k"]] = row["v"]
                except (json.JSONDecodeError, KeyError):
                    continue  # a line cut short by an interrupt: recomputed
        self.hits = 0
        self.misses = 0

    def get(self, item_key: str):
        value = self.data.get(item_key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put_many(self, items: dict[str, dict]) -> None:
        self.data.update(items)
        if not self.enabled or not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.with_suffix(".key.json").exists():
            write_json(self.path.with_suffix(".key.json"), json.loads(json.dumps(self.key, default=str)))
        append_jsonl(self.path, [{"k": k, "v": v} for k, v in items.items()])
