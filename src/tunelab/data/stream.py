"""A first preparation in bounded memory: records read, templated, rendered and tokenised a chunk
at a time, never all held at once.

Why: holding every record's texts while a task is prepared (data/build.py's held path) costs
about 4.5 KB a row, so a million rows passed 4 GB before training began. Here the source is read
three times instead (JSONL / CSV / TSV a line at a time: data/sources.py `iter_records`):
1. reading: counts and read errors, and the labels when a classification task takes its labels
   from the data;
2. templating: each record's Parts, of which only what the split and the leak check need is
   kept: its class label (stratified splits) and 16-byte digests of its leak-check input as
   written and as normalised;
3. rendering and tokenising `CHUNK` records at a time into each split's compact columns
   (data/table.py: token arrays, texts into Arrow a chunk at a time).
The result is byte-identical to the held path (tests/data/test_stream.py compares the two): the
split is the same function of (count, labels, seed); the leak check is the same set logic over
digests instead of texts (128-bit BLAKE2b; distinct texts give distinct digests in practice);
skipped and rejected records are listed in the held path's order (reading, templating, then
rendering split by split) and `on_error: raise` stops at the same record.

Passes 2 and 3 run their chunks in `data.num_proc` worker processes (data/tokenize.py `Workers`;
automatic: every usable CPU) when there is more than one chunk: templating, rendering and
tokenising are most of the work, and one Python process would leave the other cores to the
tokenizer alone. The parent reads the file, hands out chunks and takes their results back in
order (the same bytes whatever the number of processes: tests/data/test_stream.py); a worker
returns each split's rows as token arrays and text columns, which the parent appends to the
split's table at the same flush points as one row at a time.
"""

from __future__ import annotations

import hashlib
from itertools import chain

import numpy as np

from tunelab.config.data import SPLIT_NAMES
from tunelab.data.build import (Drafter, add_example, carve_plan, chat_format, context, leak_text, render_segments,
                                split_ratios, stratified, task_data)
from tunelab.data.errors import BadRecord, DataError, ErrorPolicy
from tunelab.data.example import TaskData
from tunelab.data.leakage import leak_report, leaking_indices, normalise_text
from tunelab.data import table
from tunelab.data.sources import iter_records
from tunelab.data.splits import split_indices
from tunelab.data.table import META_SCHEMA, TableBuilder, token_dtype
from tunelab.data.tasks import task_module
from tunelab.data.tokenize import IGNORE_INDEX, Workers, bos_prefix, encode_batch, worker_count

CHUNK = 8192  # records rendered and tokenised together: their texts and token lists die with the chunk


def digest(text: str) -> bytes:
    """A compact, exact-enough key of a text (surrogatepass: any Python str, one byte string each)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Reader:
    """The task's sources, read again for each pass; a source that gives a different number of
    records than the first time was changed while it was prepared."""

    def __init__(self, task, sources: dict[str, list], config_dir):
        self.task, self.sources, self.config_dir = task, sources, config_dir
        self.counts: dict[tuple[str, int], int] = {}

    def first(self, policy: ErrorPolicy, bar):
        """(source, record) of every pool in turn, counted; read errors go to `policy`."""
        for name, srcs in self.sources.items():
            for k, src in enumerate(srcs):
                n = 0
                for record in iter_records(src, self.config_dir, policy, self.task.limit):
                    n += 1
                    bar.update(1)
                    yield src, record
                self.counts[name, k] = n

    def again(self, name: str):
        """(source number, record) of pool `name` (errors were reported by the first pass)."""
        for k, src in enumerate(self.sources[name]):
            n = 0
            for record in iter_records(src, self.config_dir, ErrorPolicy("skip"), self.task.limit):
                n += 1
                yield k, record
            if n != self.counts[name, k]:
                raise _changed(self.task, f"{self.counts[name, k]} records, then {n}")


def _changed(task, how: str) -> DataError:
    return DataError(f"task '{task.name}': a data file changed while it was prepared ({how}); prepare it again")


class _State:
    """What passes 2 and 3 need to template, render and tokenise a chunk: built once in each
    worker process (or here with one process); the chat format only when first rendering, so
    that its errors come after the templating pass's, as in one process."""

    def __init__(self, task, ctx, tokenizer, chat_template, config_dir, sources, strata: bool, keys: bool,
                 max_length: int, overlength: str):
        self.task, self.tokenizer, self.chat_template, self.config_dir = task, tokenizer, chat_template, config_dir
        self.strata, self.keys, self.max_length, self.overlength = strata, keys, max_length, overlength
        self.drafter = Drafter(task, task_module(task.kind), ctx)
        self.fields = {name: [self.drafter.fields(src) for src in srcs] for name, srcs in sources.items()}
        self.fmt = self.limits = None

    def format(self):
        if self.fmt is None:
            self.fmt = chat_format(self.task, self.tokenizer, self.chat_template, self.config_dir)
        return self.fmt


def build_streamed(task, module, sources, tokenizer, config_dir, max_length, seed, *, overlength, split, leak_check,
                   policy: ErrorPolicy, chat_template, progress, num_proc: int | None = None) -> TaskData:
    """data/build.py's `build_task` for a task without few-shot examples or preference pairs;
    `num_proc`: the worker processes (None: every usable CPU; 1: none)."""
    skipped_before = len(policy.skipped)
    reader = _Reader(task, sources, config_dir)
    bar = progress.stage(f"{task.name}: reading", None)
    records = reader.first(policy, bar)
    ctx = context(task, module, records)  # reads every record when the labels come from the data
    for _ in records:  # else read here (counts, read errors)
        pass
    bar.close()
    n_records = sum(reader.counts.values())
    n_read = n_records + len(policy.skipped) - skipped_before
    processes = worker_count(num_proc) if n_records > CHUNK else 1  # one chunk: no process to start
    state = (task, ctx, tokenizer, chat_template, config_dir, sources, stratified(task, split), leak_check != "off",
             max_length, overlength)
    with Workers(processes, _State, state) as workers:
        bar = progress.stage(f"{task.name}: templating", n_records)
        compact = {name: _compact(reader, name, workers, policy, stratified(task, split), bar) for name in sources}
        bar.close()
        assigned = _assign(task, compact, split, seed)
        fmt = chat_format(task, tokenizer, chat_template, config_dir)
        leaks, found = _leaks(task, compact, assigned, leak_check, progress)
        bad_drafts = {name: c[3] for name, c in compact.items()}
        del compact
        splits, counts, rejected = _tokenised(task, reader, workers, fmt, assigned, bad_drafts, found, policy,
                                              progress)
    return task_data(task, ctx, fmt, policy.skipped[skipped_before:], n_read, splits, counts, rejected, leaks)


def _chunks(pool: str, items):
    """(pool, up to CHUNK items) at a time."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= CHUNK:
            yield pool, chunk
            chunk = []
    if chunk:
        yield pool, chunk


def _template_chunk(state: _State, chunk) -> list[tuple]:
    """Pass 2 on a chunk of (source number, record): (label, exact digest, normalised digest)
    per usable record, (where, reason) for one the task template cannot use."""
    pool, items = chunk
    out = []
    for k, record in items:
        try:
            parts = state.drafter.draft(record, state.fields[pool][k])
        except BadRecord as exc:
            out.append((exc.where, exc.reason))
            continue
        label = parts.label if state.strata else None
        if state.keys:
            text = leak_text(parts)
            out.append((label, digest(text), digest(normalise_text(text))))
        else:
            out.append((label, None, None))
    return out


def _compact(reader: _Reader, name: str, workers: Workers, policy, strata: bool, bar):
    """Pool `name`'s usable records as (labels or None, exact digests, normalised digests, the
    record numbers the template rejected): what the split and the leak check need, about 150
    bytes a record."""
    labels: list | None = [] if strata else None
    interned: dict[str, str] = {}  # one str object per label, not one per record
    exact, norm, bad = [], [], set()
    n = 0
    for out in workers.map(_template_chunk, _chunks(name, reader.again(name))):
        for entry in out:
            bar.update(1)
            n += 1
            if len(entry) == 2:  # (where, reason)
                policy.bad(BadRecord(*entry))
                bad.add(n - 1)
                continue
            label, e, m = entry
            if labels is not None:
                labels.append(interned.setdefault(label, label))
            exact.append(e)
            if e is not None:
                norm.append(m)
    return labels, exact, norm, bad


def _assign(task, compact: dict, split, seed: int) -> dict[str, np.ndarray]:
    """Each pool's records' split (an index into SPLIT_NAMES), as data/build.py `_assign_splits`."""
    code = {s: c for c, s in enumerate(SPLIT_NAMES)}
    out = {name: np.full(len(c[1]), code.get(name, -1), dtype=np.int8) for name, c in compact.items()}
    plan = carve_plan("all" in compact, compact)
    if plan is None:
        return out
    pool, targets = plan
    ratios = split_ratios(split, task.ratios)
    carve = {s: ratios[s] for s in targets}
    if sum(carve.values()) <= 0:
        raise DataError(f"task '{task.name}': split ratios for {', '.join(targets)} are all zero")
    labels, exact, _, _ = compact[pool]
    indices = split_indices(len(exact), carve, seed, task.name, labels)
    for s in targets:
        out[pool][np.asarray(indices[s], dtype=np.int64)] = code[s]
    return out


def _leaks(task, compact: dict, assigned, leak_check: str, progress):
    """The leak report and the positions to remove per split, from the digests."""
    bar = progress.stage(f"{task.name}: leak check", None)
    leaks, found = {}, {s: set() for s in SPLIT_NAMES}
    if leak_check != "off":
        keys = {s: [] for s in SPLIT_NAMES}
        normalised = {s: [] for s in SPLIT_NAMES}
        for name, (_, exact, norm, _) in compact.items():
            for j, code in enumerate(assigned[name]):
                keys[SPLIT_NAMES[code]].append(exact[j])
                normalised[SPLIT_NAMES[code]].append(norm[j])
        leaks = leak_report(keys, normalised)
        if leak_check == "remove":
            found = leaking_indices(keys, normalised)
    bar.close()
    return leaks, found


def _render_items(reader: _Reader, assigned, bad_drafts, found):
    """Pass 3's chunks: (pool, [(source number, split code, a leak-check removal?, record)]),
    the records the template rejected left out (listed by pass 2)."""
    position = {s: 0 for s in SPLIT_NAMES}
    for name, codes in assigned.items():
        yield from _chunks(name, _pool_items(reader.again(name), codes, bad_drafts[name], found, position))


def _pool_items(records, codes, bad: set, found, position: dict):
    j = 0
    for n, (k, record) in enumerate(records):
        if n in bad:
            continue
        code = int(codes[j])
        s, j = SPLIT_NAMES[code], j + 1
        position[s] += 1
        yield k, code, position[s] - 1 in found[s], record


class _Rows:
    """One chunk's rows of one split, as TableBuilder.add takes them, packed for the parent."""

    def __init__(self, dtype):
        self.dtype, self.ids, self.labels, self.prompt_len = dtype, [], [], []
        self.meta = {name: [] for name in META_SCHEMA.names}

    def add(self, input_ids, label_ids, prompt_len: int, **meta) -> None:
        self.ids.append(input_ids)
        self.labels.append(label_ids)
        self.prompt_len.append(prompt_len)
        for name, column in self.meta.items():
            column.append(meta[name])

    def packed(self) -> tuple:
        lengths = [len(ids) for ids in self.ids]
        total = sum(lengths)
        tokens = np.fromiter(chain.from_iterable(self.ids), dtype=self.dtype, count=total)
        trained = np.fromiter(chain.from_iterable(self.labels), dtype=np.int64, count=total) != IGNORE_INDEX
        return tokens, trained, lengths, self.prompt_len, self.meta


def _render_chunk(state: _State, chunk):
    """Pass 3 on a chunk: every record rendered, the rest tokenised into rows (data/build.py
    `add_example`, as the held path). Outcomes in order: ("bad", split, where, reason) when the
    chat template fails, ("dup", split) for a leak-check removal, ("row", split, truncated,
    rejection reason or None, where); and each split's packed rows."""
    pool, items = chunk
    fmt, task = state.format(), state.task
    outcomes, rows = [], []
    for k, code, duplicate, record in items:
        try:
            parts = state.drafter.draft(record, state.fields[pool][k])
        except BadRecord:
            raise _changed(task, f"{record.where} could be templated, then not") from None
        try:
            segments = render_segments(fmt, record, parts)
        except BadRecord as exc:
            outcomes.append(("bad", code, exc.where, exc.reason))
            continue
        if duplicate:
            outcomes.append(("dup", code))
            continue
        outcomes.append(None)
        rows.append((len(outcomes) - 1, code, record, parts, segments))
    if state.limits is None:
        vocab = max(len(fmt.tokenizer), fmt.tokenizer.vocab_size or 0)
        state.limits = bos_prefix(fmt.tokenizer, fmt.use_chat), token_dtype(vocab)
    bos, dtype = state.limits
    ids = iter(encode_batch(fmt.tokenizer, [text for *_, segments in rows for text, _, _ in segments]))
    out: dict[int, _Rows] = {}
    for n, code, record, parts, segments in rows:
        truncated, reason = add_example(out.setdefault(code, _Rows(dtype)), task, fmt, bos, record, parts, segments,
                                        ids, state.max_length, state.overlength)
        outcomes[n] = ("row", code, truncated, reason, record.where)
    return outcomes, {code: r.packed() for code, r in out.items()}


def _tokenised(task, reader: _Reader, workers: Workers, fmt, assigned, bad_drafts, found, policy, progress):
    """The third pass: every record rendered, leak-check removals counted, the rest tokenised a
    chunk at a time into its split's table, counted and listed as the held path does."""
    vocab = max(len(fmt.tokenizer), fmt.tokenizer.vocab_size or 0)
    builders = {s: TableBuilder(task.name, s, vocab) for s in SPLIT_NAMES}
    counts = {s: {"kept": 0, "truncated": 0, "rejected": 0, "duplicates_removed": 0} for s in SPLIT_NAMES}
    rejected = {s: [] for s in SPLIT_NAMES}
    bad = {s: [] for s in SPLIT_NAMES}  # chat templates that fail: listed split by split, as held
    bar = progress.stage(f"{task.name}: rendering, tokenizing", sum(len(a) for a in assigned.values()))
    chunks = _render_items(reader, assigned, bad_drafts, found)
    for outcomes, packed in workers.map(_render_chunk, chunks):
        for outcome in outcomes:
            s = SPLIT_NAMES[outcome[1]]
            if outcome[0] == "bad":
                exc = BadRecord(outcome[2], outcome[3])
                if s == SPLIT_NAMES[0] and policy.mode == "raise":
                    policy.bad(exc)  # no split's records are listed before train's: stop at once, as held
                bad[s].append(exc)
            elif outcome[0] == "dup":
                counts[s]["duplicates_removed"] += 1
            elif outcome[3] is not None:
                counts[s]["rejected"] += 1
                rejected[s].append(f"{outcome[4]}: {outcome[3]}")
            else:
                counts[s]["kept"] += 1
                counts[s]["truncated"] += int(outcome[2])
        for code, rows in packed.items():
            _extend(builders[SPLIT_NAMES[code]], *rows)
        bar.update(len(outcomes))
    bar.close()
    for s in SPLIT_NAMES:
        for exc in bad[s]:
            policy.bad(exc)
    return ({s: b.finish() for s, b in builders.items()}, counts, [r for s in SPLIT_NAMES for r in rejected[s]])


def _extend(builder: TableBuilder, tokens, trained, lengths, prompt_len, meta) -> None:
    """A worker's rows into a split's table, flushed at the rows where `TableBuilder.add` one
    row at a time would flush (the same Arrow batches: the same bytes in the cache)."""
    row, offset = 0, 0
    while row < len(lengths):
        take = min(table.CHUNK - len(builder.rows["source_index"]), len(lengths) - row)
        size = sum(lengths[row:row + take])
        builder.tokens.append(tokens[offset:offset + size])
        builder.trained.append(trained[offset:offset + size])
        builder.lengths.extend(lengths[row:row + take])
        builder.prompt_len.extend(prompt_len[row:row + take])
        for name, column in meta.items():
            builder.rows[name].extend(column[row:row + take])
        row, offset = row + take, offset + size
        if len(builder.rows["source_index"]) >= table.CHUNK:
            builder.flush()
