"""Result cache for evaluation: re-runs skip every model call whose answer is already known.

Key of a cache file: the model (the SHA-256 of each weights/config file, or hub id + revision), the
adapter (the same), the dtype and the scoring settings (generation settings, or "loglikelihood").
By content, not path or mtime: a run folder moved to another disk, or a final model written again
with the same bytes (a resume after a stop in the scoring that follows training), still hits. Inside, one JSON line per scored item, keyed by a hash of its
exact token ids. Batch size is not part of the key: batching does not change outputs (tested).
Lines are appended as batches finish, so an interrupted evaluation keeps its finished work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunelab.config.env import tunelab_home
from tunelab.evaluate.provenance import folder_identity
from tunelab.files import append_jsonl, write_json

def fingerprint(path_or_id: str | None, revision: str | None = None) -> dict | None:
    """Identity of a model or adapter by content: {name: sha256} of a folder's files (hashes are
    memoized, so a second look costs a stat per file); else hub id + revision."""
    identity = folder_identity(path_or_id, revision)
    if identity is not None:
        identity.pop("path", None)
    return identity


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
