"""A split's examples as compact columns: what keeps a million examples in bounded memory.

Python lists of token ids cost about 36 bytes a token (a pointer and an int object); a split of
a million examples would need tens of GB. Here a split is
- `tokens`: every example's input_ids end to end (uint16 when the vocabulary fits, else int32),
- `trained`: one byte a token, 1 where label_ids holds the token (label_ids is always either the
  token itself or -100, data/build.py), and `offsets` / `prompt_len` per example,
- `meta`: the texts and small fields in an Arrow table (prompt_text, references, source, ...).
Loaded from the cache (data/cache.py), the arrays are numpy memory maps and the Arrow table a
memory-mapped IPC file: a process touches only the pages it reads.

`ExampleTable` is a read-only sequence of `Example`s built on demand (lists of ints, exactly as
before), so evaluation, preview and everything else keep their API; training reads token arrays
directly (`token_arrays`, train/batching.py) and never builds the Examples.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tunelab.data.example import Example

IGNORE_INDEX = -100
CHUNK = 4096  # rows decoded from Arrow at once when iterating

META_SCHEMA = pa.schema([
    ("source_index", pa.int64()), ("prompt_text", pa.large_string()), ("target_text", pa.large_string()),
    ("references", pa.list_(pa.large_string())), ("label", pa.large_string()),
    ("choices", pa.list_(pa.large_string())), ("answer_index", pa.int64()), ("truncated", pa.bool_()),
    ("source", pa.large_string()), ("user_text", pa.large_string()),
    ("choice_texts", pa.list_(pa.large_string())), ("content_key", pa.string()),
])
ARRAYS = ("tokens", "trained", "offsets", "prompt_len")


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32


class ExampleTable(SequenceABC):
    """One split of one task: `Example`s on demand from compact columns (module docstring)."""

    def __init__(self, task: str, split: str, arrays: dict[str, np.ndarray], meta: pa.Table):
        self.task, self.split = task, split
        self.tokens, self.trained = arrays["tokens"], arrays["trained"]
        self.offsets, self.prompt_len = arrays["offsets"], arrays["prompt_len"]
        self.meta = meta
        self._rows: tuple[int, list[dict]] | None = None  # one decoded chunk of meta, for iteration
        self._last = -2  # the row read last (in order or not)

    def __len__(self) -> int:
        return len(self.prompt_len)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def token_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, trained mask) of example i as views into the columns (no copy)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.tokens[a:b], self.trained[a:b]

    def label_chunks(self, max_tokens: int = 1 << 20):
        """(ends, input_ids, label_ids) of consecutive rows, about `max_tokens` tokens at a time
        (a longer row alone): whole-split passes (the data fingerprint, train/resume.py) read the
        columns this way in bounded memory instead of building every Example. `ends` are the
        rows' end positions in the two int64 arrays; labels as __getitem__ makes them."""
        n, row = len(self), 0
        while row < n:
            start = int(self.offsets[row])
            stop = int(np.searchsorted(self.offsets, start + max_tokens, side="right")) - 1
            stop = min(max(stop, row + 1), n)
            end = int(self.offsets[stop])
            ids = self.tokens[start:end].astype(np.int64)
            labels = np.where(self.trained[start:end].astype(bool), ids, IGNORE_INDEX)
            yield np.asarray(self.offsets[row + 1:stop + 1]) - start, ids, labels
            row = stop

    def unique_content_keys(self) -> pa.Array:
        """The split's distinct content keys, sorted as Python sorts str (Arrow compares UTF-8
        bytes, which orders as code points do), read from the one Arrow column: no Examples."""
        keys = pc.unique(self.meta.column("content_key"))
        return keys.take(pc.array_sort_indices(keys))

    def _meta_row(self, i: int) -> dict:
        """Row i of the texts: reading in order decodes a chunk at a time, a jump one row."""
        start = i - i % CHUNK
        if self._rows is not None and self._rows[0] == start:
            return self._rows[1][i - start]
        if i % CHUNK != 0 and self._last != i - 1:
            self._last = i
            return self.meta.slice(i, 1).to_pylist()[0]
        self._rows, self._last = (start, self.meta.slice(start, CHUNK).to_pylist()), i
        return self._rows[1][i - start]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} of {len(self)}")
        ids_arr, mask = self.token_arrays(i)
        ids = ids_arr.tolist()
        labels = np.where(mask.astype(bool), ids_arr.astype(np.int64), IGNORE_INDEX).tolist()
        p = int(self.prompt_len[i])
        return Example(task=self.task, split=self.split, prompt_ids=ids[:p], target_ids=ids[p:], input_ids=ids,
                       label_ids=labels, **self._meta_row(i))

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __add__(self, other) -> list[Example]:  # as a list would: split + split is a list
        return list(self) + list(other)

    def __radd__(self, other) -> list[Example]:
        return list(other) + list(self)

    def __eq__(self, other) -> bool:
        return isinstance(other, (list, ExampleTable)) and len(self) == len(other) and all(
            a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"ExampleTable({self.task!r}, {self.split!r}, {len(self)} examples)"

    # -- on disk: one .npy per array and an Arrow IPC file, all memory-mapped when read --------
    def save(self, folder: Path, stem: str) -> list[Path]:
        written = []
        for name in ARRAYS:
            path = folder / f"{stem}.{name}.npy"
            np.save(path, np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
            written.append(path)
        path = folder / f"{stem}.meta.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, META_SCHEMA) as writer:
            writer.write_table(self.meta)
        return written + [path]

    @classmethod
    def load(cls, folder: Path, stem: str, task: str, split: str) -> "ExampleTable":
        arrays = {name: np.load(folder / f"{stem}.{name}.npy", mmap_mode="r", allow_pickle=False)
                  for name in ARRAYS}
        meta = pa.ipc.open_file(pa.memory_map(str(folder / f"{stem}.meta.arrow"), "r")).read_all()
        table = cls(task, split, arrays, meta)
        table.check()
        return table

    def check(self) -> None:
        """Shapes that must agree (a truncated or mixed-up file fails here, not in a batch)."""
        n, total = len(self.prompt_len), len(self.tokens)
        ok = (len(self.offsets) == n + 1 and len(self.trained) == total and self.meta.num_rows == n
              and (n == 0 or (int(self.offsets[0]) == 0 and int(self.offsets[-1]) == total)))
        if not ok:
            raise ValueError(f"inconsistent columns in the cached split {self.task}/{self.split}")


class TableBuilder:
    """Collects one split's examples chunk by chunk into compact columns."""

    def __init__(self, task: str, split: str, vocab_size: int):
        self.task, self.split, self.dtype = task, split, token_dtype(vocab_size)
        self.tokens: list[np.ndarray] = []  # pending rows, then one array per flushed chunk
        self.trained: list[np.ndarray] = []
        self.chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self.lengths: list[int] = []
        self.prompt_len: list[int] = []
        self.batches: list[pa.RecordBatch] = []
        self.rows: dict[str, list] = {name: [] for name in META_SCHEMA.names}

    def add(self, input_ids: list[int], label_ids: list[int], prompt_len: int, **meta) -> None:
        self.tokens.append(np.asarray(input_ids, dtype=self.dtype))
        self.trained.append(np.asarray(label_ids, dtype=np.int64) != IGNORE_INDEX)
        self.lengths.append(len(input_ids))
        self.prompt_len.append(prompt_len)
        for name in META_SCHEMA.names:
            self.rows[name].append(meta[name])
        if len(self.rows["source_index"]) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Move the pending rows into Arrow and one array each (Python objects freed)."""
        if self.rows["source_index"]:
            self.batches.append(pa.RecordBatch.from_pydict(self.rows, schema=META_SCHEMA))
            self.rows = {name: [] for name in META_SCHEMA.names}
        if self.tokens:
            self.chunks.append((np.concatenate(self.tokens), np.concatenate(self.trained)))
            self.tokens, self.trained = [], []

    def finish(self) -> ExampleTable:
        self.flush()
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        tokens = [t for t, _ in self.chunks] or [np.zeros(0, self.dtype)]
        trained = [m for _, m in self.chunks] or [np.zeros(0, bool)]
        arrays = {"tokens": np.concatenate(tokens), "trained": np.concatenate(trained).astype(np.uint8),
                  "offsets": offsets, "prompt_len": np.asarray(self.prompt_len, dtype=np.int32)}
        meta = pa.Table.from_batches(self.batches, schema=META_SCHEMA)
        return ExampleTable(self.task, self.split, arrays, meta)


class EpochView(SequenceABC):
    """An epoch's training order over several tasks' tables: (task, index) pairs kept as two
    numpy arrays, Examples built only when asked for, token arrays read straight from the tables."""

    def __init__(self, tables: dict[str, ExampleTable], order: list[tuple[str, int]]):
        self.names = sorted(tables)
        self.tables = [tables[name] for name in self.names]
        code = {name: c for c, name in enumerate(self.names)}
        self.task_codes = np.fromiter((code[t] for t, _ in order), dtype=np.int32, count=len(order))
        self.indices = np.fromiter((i for _, i in order), dtype=np.int64, count=len(order))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        return self.tables[self.task_codes[k]][int(self.indices[k])]

    def token_arrays(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.tables[self.task_codes[k]].token_arrays(int(self.indices[k]))

    @property
    def lengths(self) -> np.ndarray:
        out = np.zeros(len(self), dtype=np.int64)
        for c, table in enumerate(self.tables):
            where = self.task_codes == c
            out[where] = table.lengths[self.indices[where]]
        return out
