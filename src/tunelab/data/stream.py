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
"""

from __future__ import annotations

import hashlib

import numpy as np

from tunelab.config.data import SPLIT_NAMES
from tunelab.data.build import (Drafter, add_example, carve_plan, chat_format, context, leak_text, render_segments,
                                split_ratios, stratified)
from tunelab.data.errors import BadRecord, DataError, ErrorPolicy
from tunelab.data.example import TaskData
from tunelab.data.leakage import leak_report, leaking_indices, normalise_text
from tunelab.data.sources import iter_records
from tunelab.data.splits import split_indices
from tunelab.data.table import TableBuilder
from tunelab.data.tokenize import bos_prefix, encode_batch

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
        """(source, record) of pool `name` (errors were reported by the first pass)."""
        for k, src in enumerate(self.sources[name]):
            n = 0
            for record in iter_records(src, self.config_dir, ErrorPolicy("skip"), self.task.limit):
                n += 1
                yield src, record
            if n != self.counts[name, k]:
                raise DataError(f"task '{self.task.name}': a data file changed while it was prepared "
                                f"({self.counts[name, k]} records, then {n}); prepare it again")


def build_streamed(task, module, sources, tokenizer, config_dir, max_length, seed, *, overlength, split, leak_check,
                   policy: ErrorPolicy, chat_template, progress) -> TaskData:
    """data/build.py's `build_task` for a task without few-shot examples or preference pairs."""
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
    drafter = Drafter(task, module, ctx)
    bar = progress.stage(f"{task.name}: templating", n_records)
    compact = {name: _compact(reader, name, drafter, policy, stratified(task, split), leak_check != "off", bar)
               for name in sources}
    bar.close()
    assigned = _assign(task, compact, split, seed)
    fmt = chat_format(task, tokenizer, chat_template, config_dir)

    bar = progress.stage(f"{task.name}: leak check", None)
    leaks, found = {}, {s: set() for s in SPLIT_NAMES}
    if leak_check != "off":
        keys = {s: [] for s in SPLIT_NAMES}
        normalised = {s: [] for s in SPLIT_NAMES}
        for name, (_, exact, norm) in compact.items():
            for j, code in enumerate(assigned[name]):
                keys[SPLIT_NAMES[code]].append(exact[j])
                normalised[SPLIT_NAMES[code]].append(norm[j])
        leaks = leak_report(keys, normalised)
        if leak_check == "remove":
            found = leaking_indices(keys, normalised)
        del keys, normalised
    del compact
    bar.close()
    splits, counts, rejected = _tokenised(task, reader, drafter, fmt, assigned, found, max_length, overlength,
                                          policy, progress)
    skipped = policy.skipped[skipped_before:]
    totals = {k: sum(c[k] for c in counts.values()) for k in ("kept", "truncated", "rejected", "duplicates_removed")}
    all_counts = {"read": n_read, "skipped": len(skipped), **totals, "by_split": counts}
    return TaskData(name=task.name, kind=task.kind, splits=splits, labels=ctx.labels, counts=all_counts,
                    skipped=skipped, rejected=rejected, leaks=leaks, label_synonyms=ctx.label_synonyms,
                    chat_template=fmt.describe(task.chat_template))


def _compact(reader: _Reader, name: str, drafter: Drafter, policy, strata: bool, keys: bool, bar):
    """Pool `name`'s usable records as (labels or None, exact digests, normalised digests):
    what the split and the leak check need, about 150 bytes a record."""
    labels: list | None = [] if strata else None
    interned: dict[str, str] = {}  # one str object per label, not one per record
    exact, norm = [], []
    for src, record in reader.again(name):
        bar.update(1)
        try:
            parts = drafter.draft(record, drafter.fields(src))
        except BadRecord as exc:
            policy.bad(exc)
            continue
        if labels is not None:
            labels.append(interned.setdefault(parts.label, parts.label))
        if keys:
            text = leak_text(parts)
            exact.append(digest(text))
            norm.append(digest(normalise_text(text)))
        else:
            exact.append(None)
    return labels, exact, norm


def _assign(task, compact: dict, split, seed: int) -> dict[str, np.ndarray]:
    """Each pool's records' split (an index into SPLIT_NAMES), as data/build.py `_assign_splits`."""
    code = {s: c for c, s in enumerate(SPLIT_NAMES)}
    out = {name: np.full(len(exact), code.get(name, -1), dtype=np.int8) for name, (_, exact, _) in compact.items()}
    plan = carve_plan("all" in compact, compact)
    if plan is None:
        return out
    pool, targets = plan
    ratios = split_ratios(split, task.ratios)
    carve = {s: ratios[s] for s in targets}
    if sum(carve.values()) <= 0:
        raise DataError(f"task '{task.name}': split ratios for {', '.join(targets)} are all zero")
    labels, exact, _ = compact[pool]
    indices = split_indices(len(exact), carve, seed, task.name, labels)
    for s in targets:
        out[pool][np.asarray(indices[s], dtype=np.int64)] = code[s]
    return out


def _tokenised(task, reader: _Reader, drafter: Drafter, fmt, assigned, found, max_length, overlength, policy,
               progress):
    """The third pass: every record rendered, leak-check removals counted, the rest tokenised a
    chunk at a time into its split's table (data/build.py `add_example`, as the held path)."""
    tokenizer = fmt.tokenizer
    bos = bos_prefix(tokenizer, fmt.use_chat)
    vocab = max(len(tokenizer), tokenizer.vocab_size or 0)
    builders = {s: TableBuilder(task.name, s, vocab) for s in SPLIT_NAMES}
    counts = {s: {"kept": 0, "truncated": 0, "rejected": 0, "duplicates_removed": 0} for s in SPLIT_NAMES}
    rejected = {s: [] for s in SPLIT_NAMES}
    bad = {s: [] for s in SPLIT_NAMES}  # chat templates that fail: listed split by split, as held
    position = {s: 0 for s in SPLIT_NAMES}
    chunk: list = []

    def flush():
        ids = iter(encode_batch(tokenizer, [text for *_, segments in chunk for text, _, _ in segments]))
        for s, record, parts, segments in chunk:
            truncated, reason = add_example(builders[s], task, fmt, bos, record, parts, segments, ids,
                                            max_length, overlength)
            if reason is not None:
                counts[s]["rejected"] += 1
                rejected[s].append(f"{record.where}: {reason}")
                continue
            counts[s]["kept"] += 1
            counts[s]["truncated"] += int(truncated)
        bar.update(len(chunk))
        chunk.clear()

    bar = progress.stage(f"{task.name}: rendering, tokenizing", sum(len(a) for a in assigned.values()))
    for name, codes in assigned.items():
        j = 0
        for src, record in reader.again(name):
            try:
                parts = drafter.draft(record, drafter.fields(src))
            except BadRecord:
                continue  # listed by the templating pass
            s = SPLIT_NAMES[codes[j]]
            i, j = position[s], j + 1
            position[s] += 1
            try:
                segments = render_segments(fmt, record, parts)
            except BadRecord as exc:
                if s == SPLIT_NAMES[0] and policy.mode == "raise":
                    policy.bad(exc)  # no split's records are listed before train's: stop at once, as held
                bad[s].append(exc)
                continue
            if i in found[s]:
                counts[s]["duplicates_removed"] += 1
                continue
            chunk.append((s, record, parts, segments))
            if len(chunk) >= CHUNK:
                flush()
    flush()
    bar.close()
    for s in SPLIT_NAMES:
        for exc in bad[s]:
            policy.bad(exc)
    return ({s: b.finish() for s, b in builders.items()}, counts, [r for s in SPLIT_NAMES for r in rejected[s]])
