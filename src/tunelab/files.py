"""Result files that survive crashes and full disks: atomic writes, append-only logs, clear errors.

Every result file tunelab writes (summary.json, results.json, forgetting.json, matrix.json,
report.html, ...) goes through `write_text` / `write_json`: the bytes go to a temporary file in
the same folder, are fsync'ed, and the temporary file is renamed over the target. A reader sees
the old file or the new one, never half of one, whatever happens in between (kill -9, power
loss, a full disk). Logs (metrics.jsonl, the evaluation cache) are append-only JSON lines: a
crash can leave at most a torn last line, which `read_jsonl` drops and reports.

A full disk (ENOSPC, EDQUOT) or a file too big for its limit (EFBIG) becomes one `DiskFull`
error naming the path and the free space, instead of a traceback from deep inside json or
safetensors. Written by hand because no library does the three together (rename, fsync of the
file and its folder, errno mapping) for text and JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from tunelab.config.base import UserError

FULL_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class DiskFull(UserError):
    """No room to write a file; the message names the path and the free space left."""


def free_mb(path: Path) -> float | None:
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free / 2**20
            except OSError:
                return None
    return None


def disk_full_error(path: Path, exc: OSError) -> DiskFull:
    free = free_mb(path)
    room = f"{free:.1f} MB free" if free is not None else "free space unknown"
    what = "file size limit exceeded" if exc.errno == errno.EFBIG else "no space left on the device"
    return DiskFull(f"{path}: {what} while writing it ({room}); free some space (or choose another "
                    f"output folder) and run the command again")


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def full_disk_errno(exc: BaseException) -> int | None:
    """The errno of a full-disk error: an OSError, or a library error that wraps one in its message
    (safetensors raises SafetensorError("... I/O error: No space left on device (os error 28)"))."""
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in FULL_DISK_ERRNOS else None
    match = _OS_ERROR.search(str(exc))
    if match and int(match.group(1)) in FULL_DISK_ERRNOS:
        return int(match.group(1))
    return None


@contextlib.contextmanager
def disk_errors(path: Path):
    """Turn a full-disk error raised inside the block into DiskFull(path)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a full disk
        number = full_disk_errno(exc)
        if number is None:
            raise
        raise disk_full_error(Path(path), OSError(number, os.strerror(number))) from None


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def umask_mode(mode: int = 0o666) -> int:
    """`mode` as the process's umask lets a new file have it (what open() would give the file)."""
    try:  # Linux says it without changing it (threads may be creating files meanwhile)
        with open("/proc/self/status", encoding="ascii") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)  # elsewhere, reading the umask means setting it: set it straight back
        os.umask(mask)
    return mode & ~mask


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically replace `path` with `data` (temporary file in the same folder, fsync, rename).
    The file gets the mode open() would give it (0666 less the umask), not mkstemp's private 0600."""
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, umask_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    fsync_dir(path.parent)
    return path


def stored_path(folder: str | Path, path: str | Path) -> str:
    """`path` as a file in `folder` records it: relative to `folder` when it is inside it (the
    folder, a run, can then move or be copied as a whole), else absolute. Readers resolve it with
    `Path(folder) / stored` (an absolute one stays itself)."""
    folder, path = Path(folder).resolve(), Path(path).resolve()
    return str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(to_jsonable(data), indent=indent, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows) -> Path:
    """A whole JSON-lines file at once (per-example results), atomically."""
    return write_text(path, "".join(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | Path, rows) -> None:
    """Append lines to a log; each line is complete or absent after a crash (see read_jsonl)."""
    path = Path(path)
    text = "".join(json.dumps(to_jsonable(r), ensure_ascii=False) + "\n" for r in rows)
    if not text:
        return
    with disk_errors(path):
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()


@dataclasses.dataclass
class JsonLines:
    rows: list
    torn: list[int]  # line numbers that were not JSON (a torn last line after a crash)


def read_jsonl(path: str | Path) -> JsonLines:
    """Read a JSON-lines log, keeping every complete line and listing the lines that are not JSON."""
    rows, torn = [], []
    path = Path(path)
    if not path.exists():
        return JsonLines(rows, torn)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rows.append(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, json.JSONDecodeError):
                torn.append(number)
    return JsonLines(rows, torn)


def to_jsonable(obj):
    """Dataclasses, numpy scalars, paths and tuples as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "__dict__"):
        return to_jsonable(vars(obj))
    return str(obj)
