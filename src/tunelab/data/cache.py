"""Prepared once: each task's tokenised splits stored under a key of everything that changes them.

The key (SHA-256 of a JSON document, `task_key`) covers the task's config, the contents of its
data files (hashed in full: a size + mtime check alone misses an edit that keeps both), how their
paths are shown in `file:line` messages, the data section's max_length / overlength / on_error /
split / leak_check / seed, the chat template choice and its text, the tokenizer (its vocabulary,
merges and normaliser as one JSON, its special tokens, its own chat template), the tunelab
version, the data pipeline's source code and this cache's format. A hub source is keyed by its name only when it names a
`revision`; otherwise the task is not cached (the hub may change what the same name gives).

An entry is a folder `<root>/<key>/`: per split the compact columns of data/table.py, and
`manifest.json` (counts, skipped, rejected, leaks, labels, the SHA-256 of every file). It is
written in a temporary folder, fsync'ed and renamed into place, so a reader sees a whole entry or
none; on load every file is checked against the manifest, and an entry that fails is removed and
rebuilt. A cache that cannot be written (read-only, full disk) costs a warning, never the run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tunelab.config.data import SPLIT_NAMES
from tunelab.data.example import TaskData
from tunelab.data.table import ExampleTable

FORMAT = 1  # bump when the stored columns or the preparation's output change
MANIFEST = "manifest.json"
# Least recently used entries beyond these go (a load touches its manifest): test suites and
# studies leave many small entries, a few big datasets fill a disk.
MAX_ENTRIES, MAX_BYTES = 256, 50 * 2**30
# (path, inode, size, mtime, ctime) -> content hash, in this process only. Size and mtime alone
# miss an edit that keeps both (os.utime sets mtime back); ctime cannot be set back that way.
_FILE_HASHES: dict[tuple, str] = {}


def cache_root(setting, config_dir=".") -> Path | None:
    """data.cache: true (TUNELAB_HOME/data), false (off) or a folder (relative to the config)."""
    if setting is False or setting is None:
        return None
    if setting is True:
        from tunelab.config.env import tunelab_home

        return tunelab_home() / "data"
    path = Path(setting).expanduser()
    return path if path.is_absolute() else Path(config_dir) / path


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, computed once per process while its inode's times are unchanged."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo not in _FILE_HASHES:
        with open(path, "rb") as f:
            _FILE_HASHES[memo] = hashlib.file_digest(f, "sha256").hexdigest()
    return _FILE_HASHES[memo]


def tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer as data preparation sees it: what maps text to ids, and its special tokens."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode("utf-8"))
    else:  # a slow (Python) tokenizer: its vocabulary
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode("utf-8"))
    specials = {"added": sorted((int(i), str(t)) for i, t in tokenizer.added_tokens_decoder.items()),
                "map": {k: str(v) for k, v in tokenizer.special_tokens_map.items()}, "len": len(tokenizer),
                "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
                "chat_template": getattr(tokenizer, "chat_template", None)}
    h.update(json.dumps(specials, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()


def _source_files(src, config_dir) -> list | None:
    """What a source's records depend on beyond the config: each file (shown path, hash); None
    when the source cannot be keyed (a hub dataset without a revision)."""
    from tunelab.data.sources import _display, _expand_path

    if src.records is not None:
        return []
    if src.hub is not None:
        return None if src.revision is None else [["hub", src.hub, src.config, src.split, src.revision]]
    return [[_display(p), file_hash(p)] for p in _expand_path(src.path, config_dir)]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The data pipeline's own source (tunelab/data and the data config): a change to how data is
    prepared misses every entry, also between releases (a development checkout, a patched install)."""
    import tunelab.config.data as config_data

    h = hashlib.sha256()
    folder = Path(__file__).parent
    for path in sorted([*folder.rglob("*.py"), *folder.rglob("*.jinja"), Path(config_data.__file__)]):
        h.update(str(path.relative_to(folder.parent)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def task_key(task, data_cfg, tokenizer, config_dir, seed: int) -> str | None:
    """The cache key of one task of `data_cfg` (a DataConfig), None when it cannot be cached."""
    if task.kind in ("preference", "kto"):  # lists of PreferenceExample (data/preference.py), not tables (#24)
        return None
    import tunelab
    from tunelab.data.templates import template_source

    given = {"all": task.source} if task.source is not None else dict(task.splits)
    files = []
    for name, srcs in sorted(given.items()):
        for src in srcs if isinstance(srcs, list) else [srcs]:
            found = _source_files(src, config_dir)
            if found is None:
                return None
            files.append([name, found])
    doc = {
        "format": FORMAT, "tunelab": tunelab.__version__, "code": code_fingerprint(),
        "task": task.model_dump(mode="json"), "files": files,
        "max_length": data_cfg.max_length, "overlength": data_cfg.overlength, "on_error": data_cfg.on_error,
        "split": data_cfg.split.model_dump(mode="json"), "leak_check": data_cfg.leak_check, "seed": seed,
        "chat_template": [data_cfg.chat_template, template_source(data_cfg.chat_template, config_dir)],
        "tokenizer": tokenizer_fingerprint(tokenizer),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _warn(message: str) -> None:
    print(f"tunelab: warning: {message}", file=sys.stderr, flush=True)


def load_task(root: Path, key: str) -> TaskData | None:
    """The cached task, or None (absent; or damaged: then removed, so that it is rebuilt)."""
    folder = root / key
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("key") != key:
            raise ValueError("manifest of another key or format")
        for name, digest in manifest["files"].items():
            if file_hash(folder / name) != digest:
                raise ValueError(f"{name} does not match its checksum")
        task = manifest["task"]
        splits = {s: ExampleTable.load(folder, s, task["name"], s) for s in SPLIT_NAMES}
        os.utime(manifest_path)  # recently used (prune)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _warn(f"the data cache entry {folder} is damaged ({exc}); preparing the data again")
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return TaskData(splits=splits, **task)


def store_task(root: Path, key: str, data: TaskData) -> bool:
    """Write `data` as the entry `key`, atomically (module docstring); False when it could not."""
    from tunelab.files import fsync_dir

    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=root))
        written = [p for s in SPLIT_NAMES for p in _table(data, s).save(tmp, s)]
        for path in written:
            with open(path, "rb+") as f:
                os.fsync(f.fileno())
        task = {"name": data.name, "kind": data.kind, "labels": data.labels, "counts": data.counts,
                "skipped": data.skipped, "rejected": data.rejected, "leaks": data.leaks,
                "label_synonyms": data.label_synonyms, "chat_template": data.chat_template}
        manifest = {"format": FORMAT, "key": key, "task": task, "files": {p.name: file_hash(p) for p in written}}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(tmp)
        try:
            os.rename(tmp, root / key)
        except OSError:
            if not (root / key / MANIFEST).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process stored the same entry first
        fsync_dir(root)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _warn(f"could not write the data cache under {root} ({exc.strerror or exc}); the data is prepared "
              f"again next time (data.cache=false turns the cache off)")
        return False
    with contextlib.suppress(OSError):  # another process pruning at the same time
        prune(root)
    return True


def prune(root: Path, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
    """Remove the least recently used entries beyond `max_entries` or `max_bytes` in all."""
    import time

    entries = []
    for folder in root.iterdir():
        if folder.name.endswith(".tmp") and folder.stat().st_mtime < time.time() - 86400:
            shutil.rmtree(folder, ignore_errors=True)  # left by a process killed while writing
            continue
        manifest = folder / MANIFEST
        if manifest.is_file():
            size = sum(p.stat().st_size for p in folder.iterdir())
            entries.append((manifest.stat().st_mtime, size, folder))
    entries.sort(reverse=True)  # newest first
    total = 0
    for n, (_, size, folder) in enumerate(entries):
        total += size
        if n > 0 and (n >= max_entries or total > max_bytes):  # never the entry just stored
            shutil.rmtree(folder, ignore_errors=True)


def _table(data: TaskData, split: str) -> ExampleTable:
    table = data.splits[split]
    if not isinstance(table, ExampleTable):
        raise TypeError(f"task '{data.name}': split {split} is not an ExampleTable")
    return table
