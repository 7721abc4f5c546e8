"""Read raw records from JSONL, JSON, CSV, TSV, Parquet, a Hugging Face hub dataset or a list.

Every record carries `where` (`file:line`, `file: row N`, ...) so later errors can name it.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tunelab.data.errors import BadRecord, DataError, ErrorPolicy

FORMATS_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
}


@dataclass
class Record:
    data: dict
    where: str  # human-readable location for error messages
    index: int  # line (text formats) or row/record number, as in `where`


def load_records(source, config_dir: str | Path = ".", policy: ErrorPolicy | None = None,
                 limit: int | None = None) -> list[Record]:
    """All records of one `SourceConfig`, in source order (at most `limit`)."""
    return list(iter_records(source, config_dir, policy, limit))


def iter_records(source, config_dir: str | Path = ".", policy: ErrorPolicy | None = None,
                 limit: int | None = None):
    """The records of `load_records`, one at a time: JSONL, CSV and TSV files are read a line at
    a time (a bounded-memory preparation reads them again instead of holding them, data/stream.py);
    the same records, errors and order as the list."""
    policy = policy or ErrorPolicy("raise")
    added = getattr(source, "add_fields", None)
    for record in _iter_source(source, config_dir, policy, limit):
        yield Record({**record.data, **added}, record.where, record.index) if added else record


def _iter_source(source, config_dir, policy: ErrorPolicy, limit):
    if source.records is not None or source.hub is not None:
        if source.records is not None:
            records = [_check_mapping(r, f"records[{i}]", i, policy) for i, r in enumerate(source.records)]
            records = [r for r in records if r is not None]
        else:
            records = _read_hub(source, limit)
        yield from (records if limit is None else records[:limit])
        return
    n = 0
    for path in _expand_path(source.path, config_dir):
        fmt = source.format if source.format != "auto" else _guess_format(path)
        reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv,
                  "tsv": _read_csv, "parquet": _read_parquet}[fmt]
        left = None if limit is None else limit - n
        if left is not None and left <= 0:
            break
        for record in reader(path, source, fmt, policy, left):
            n += 1
            yield record


def with_added_fields(records: list[Record], added: dict | None) -> list[Record]:
    """`add_fields`: the same constant fields on every record of a source (they replace a column
    of the same name). New dicts: inline records must not be changed in the config."""
    if not added:
        return records
    return [Record({**r.data, **added}, r.where, r.index) for r in records]


def _expand_path(pattern: str, config_dir) -> list[Path]:
    path = Path(pattern).expanduser()
    if not path.is_absolute():
        path = Path(config_dir) / path
    path = Path(_display(path))
    if any(ch in pattern for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(str(path)))
        if not found:
            raise DataError(f"{path}: no files match this pattern")
        return found
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in FORMATS_BY_SUFFIX)
        if not found:
            raise DataError(f"{path}: folder holds no .jsonl/.json/.csv/.tsv/.parquet files")
        return found
    if not path.exists():
        raise DataError(f"{path}: data file not found")
    return [path]


def _display(path: Path) -> str:
    """The path as errors show it: relative to the working folder when that is shorter."""
    absolute = os.path.normpath(os.path.abspath(path))
    try:
        relative = os.path.relpath(absolute)
    except ValueError:  # another drive on Windows
        return absolute
    return relative if len(relative) < len(absolute) else absolute


def _guess_format(path: Path) -> str:
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: cannot tell the format from the extension; set format: "
                        f"jsonl|json|csv|tsv|parquet")
    return fmt


def _check_mapping(data, where: str, index: int, policy: ErrorPolicy) -> Record | None:
    if not isinstance(data, dict):
        policy.bad(BadRecord(where, f"expected an object with fields, got {type(data).__name__}"))
        return None
    return Record(data, where, index)


def _read_jsonl(path: Path, source, fmt, policy: ErrorPolicy, limit) -> Iterator[Record]:
    n = 0
    content_lines = 0  # lines that are not blank, good or bad: none at all means an empty file
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if limit is not None and n >= limit:
                break
            where = f"{path}:{line_no}"
            if raw.strip():
                content_lines += 1
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                policy.bad(BadRecord(where, f"not UTF-8 text (byte {exc.start + 1} of the line; "
                                            f"save the file as UTF-8)"))
                continue
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                policy.bad(BadRecord(where, f"malformed JSON: {exc.msg} (column {exc.colno})"))
                continue
            record = _check_mapping(data, where, line_no, policy)
            if record is not None:
                n += 1
                yield record
    if not content_lines:
        raise _no_records(path, "the file is empty")


def _no_records(path: Path, why: str) -> DataError:
    # Reading on with zero records would train or preview nothing and report a table of "None".
    return DataError(f"{path}: no records ({why})")


def _not_utf8(path: Path, raw: bytes) -> DataError:
    """`file:line: not UTF-8 text (byte K of the line)` for the first byte that is not UTF-8.

    Decoders of text streams report offsets inside a read block, so the whole file is decoded
    again here (only on this error path) to find the line."""
    try:
        raw.decode("utf-8")  # a byte-order mark is valid UTF-8: offsets stay those of the file
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return DataError(f"{path}:{line}: not UTF-8 text (byte {column} of the line; save the file as UTF-8)")
    return DataError(f"{path}: not UTF-8 text (save the file as UTF-8)")


def _read_json(path: Path, source, fmt, policy: ErrorPolicy, limit) -> list[Record]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _not_utf8(path, raw) from None
    if not text.strip():
        raise _no_records(path, "the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of records at the top level")
    if not data:
        raise _no_records(path, "the file is an empty JSON array")
    records = []
    for i, item in enumerate(data[:limit] if limit is not None else data):
        record = _check_mapping(item, f"{path}: record {i}", i, policy)
        if record is not None:
            records.append(record)
    return records


def _read_csv(path: Path, source, fmt, policy: ErrorPolicy, limit) -> Iterator[Record]:
    # TSV files (GLUE and friends) use bare quotes inside text: no quoting there.
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    try:
        yield from _read_csv_rows(path, source, fmt, policy, limit, options)
    except UnicodeDecodeError:
        raise _not_utf8(path, path.read_bytes()) from None


def _read_csv_rows(path: Path, source, fmt, policy: ErrorPolicy, limit, options) -> Iterator[Record]:
    n = 0
    # utf-8-sig: spreadsheet exports start with a byte-order mark that would stick to the first name
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, **options)
        names = source.columns
        if source.header:
            # the first row that is not blank: a blank first line is not a header of no columns
            header = next((row for row in reader if any(cell.strip() for cell in row)), None)
            if header is None:
                raise _no_records(path, "the file is empty")
            names = names or [h.strip() for h in header]
        if not names:
            raise DataError(f"{path}: the file has no header row; name its columns with `columns:`")
        rows_seen = 0  # data rows, good or bad: none at all means there is nothing to read
        while limit is None or n < limit:
            start_line = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                rows_seen += 1
                policy.bad(BadRecord(f"{path}:{start_line}", f"malformed {fmt.upper()} row: {exc}"))
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            rows_seen += 1
            where = f"{path}:{start_line}"
            if len(row) != len(names):
                policy.bad(BadRecord(where, f"row has {len(row)} columns, expected {len(names)} "
                                            f"({', '.join(names)})"))
                continue
            n += 1
            yield Record(dict(zip(names, row)), where, start_line)
    if not rows_seen:
        raise _no_records(path, "the file has a header row and no data rows" if source.header else "the file is empty")


def _read_parquet(path: Path, source, fmt, policy: ErrorPolicy, limit) -> list[Record]:
    import pyarrow.parquet as pq

    if path.stat().st_size == 0:  # pyarrow's own message for this says nothing about emptiness
        raise _no_records(path, "the file is empty")
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path}: cannot read Parquet file: {exc}") from None
    if not rows:
        raise _no_records(path, "the Parquet file has no rows")
    if limit is not None:
        rows = rows[:limit]
    return [Record(row, f"{path}: row {i}", i) for i, row in enumerate(rows)]


def _read_hub(source, limit) -> list[Record]:
    try:
        import datasets
    except ImportError:
        raise DataError("hub datasets need the 'datasets' package: pip install datasets") from None
    split = source.split or "train"
    if limit is not None:
        split = f"{split}[:{limit}]"
    name = source.hub + (f"/{source.config}" if source.config else "")
    try:
        ds = datasets.load_dataset(source.hub, source.config, split=split, revision=source.revision)
    except Exception as exc:  # network, missing dataset, bad split name: all user-fixable
        raise DataError(f"hub dataset '{name}' (split {split}): cannot load it: {exc}") from None
    return [Record(dict(row), f"{name}[{source.split or 'train'}] row {i}", i) for i, row in enumerate(ds)]
