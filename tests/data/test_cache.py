"""The prepared-data cache (data/cache.py) and the compact example tables (data/table.py): a hit
for unchanged inputs and a miss for every input that changes the result, entries verified on
load, the same training batches with and without the cache, and training that reads token
arrays instead of holding the epoch as Python lists."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest
import torch
from data_helpers import make_config, write_jsonl

import tunelab
from tunelab.data import cache, prepare
from tunelab.data.cache import MANIFEST, task_key
from tunelab.data.table import EpochView, ExampleTable
from tunelab.train.batching import collate, to_sequences
from tunelab.train.steps import epoch_plan

ROWS = [{"prompt": f"Question {i}: what is {i} plus {i}?", "completion": f" It is {2 * i}."} for i in range(60)]


def _task(path, **extra):
    return {"name": "sums", "kind": "completion", "source": str(path), **extra}


def _cfg(tmp_path, path, cache=True, task=None, **data):
    cache_dir = str(tmp_path / "cache") if cache is True else cache
    return make_config(tmp_path, [_task(path, **(task or {}))], cache=cache_dir, max_length=64, **data)


def _key(cfg, tokenizer):
    return task_key(cfg.data.tasks[0], cfg.data, tokenizer, cfg.config_dir, cfg.seed)


@pytest.fixture
def data_file(tmp_path):
    return tmp_path / "sums.jsonl", write_jsonl(tmp_path / "sums.jsonl", ROWS)


def test_every_input_that_changes_the_data_changes_the_key(tmp_path, tokenizer, data_file, monkeypatch):
    path, _ = data_file
    base = _key(_cfg(tmp_path, path), tokenizer)
    assert _key(_cfg(tmp_path, path), tokenizer) == base  # deterministic
    changed = {
        "task config": _cfg(tmp_path, path, task={"instruction": "Add."}),
        "max_length": make_config(tmp_path, [_task(path)], cache=str(tmp_path / "cache"), max_length=65),
        "seed": make_config(tmp_path, [_task(path)], cache=str(tmp_path / "cache"), max_length=64,
                            split={"seed": 8}),
        "split ratios": _cfg(tmp_path, path, split={"train": 0.5, "validation": 0.25, "test": 0.25}),
        "leak check": _cfg(tmp_path, path, leak_check="report"),
        "over-length policy": _cfg(tmp_path, path, overlength="reject"),
        "bad-record policy": _cfg(tmp_path, path, on_error="skip"),
        "chat template": _cfg(tmp_path, path, chat_template="llama-3"),
    }
    keys = {name: _key(cfg, tokenizer) for name, cfg in changed.items()}
    assert all(k != base for k in keys.values()), keys
    assert len(set(keys.values())) == len(keys)
    # a Jinja file's text, not only its name
    jinja = tmp_path / "mine.jinja"
    jinja.write_text("{% for m in messages %}{{ m.content }}\n{% endfor %}", encoding="utf-8")
    first = _key(_cfg(tmp_path, path, chat_template=str(jinja)), tokenizer)
    jinja.write_text("{% for m in messages %}{{ m.content }}\n\n{% endfor %}", encoding="utf-8")
    assert _key(_cfg(tmp_path, path, chat_template=str(jinja)), tokenizer) != first
    # the tunelab version, and the data pipeline's code between versions
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "changed")
    assert _key(_cfg(tmp_path, path), tokenizer) != base
    monkeypatch.undo()
    monkeypatch.setattr(tunelab, "__version__", "9.9.9")
    assert _key(_cfg(tmp_path, path), tokenizer) != base


def test_the_data_file_is_keyed_by_its_content_even_with_the_same_size_and_mtime(tmp_path, tokenizer, data_file):
    path, _ = data_file
    base = _key(_cfg(tmp_path, path), tokenizer)
    stat = path.stat()
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("Question 7", "Question 8", 1), encoding="utf-8")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same modification time
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert _key(_cfg(tmp_path, path), tokenizer) != base


def test_the_tokenizer_is_part_of_the_key(tmp_path, tokenizer, data_file):
    path, _ = data_file
    cfg = _cfg(tmp_path, path)
    base = _key(cfg, tokenizer)
    other = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    assert _key(cfg, other) == base
    other.add_tokens(["<sum>"])
    assert _key(cfg, other) != base
    other = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    other.chat_template = other.chat_template + " "
    assert _key(cfg, other) != base


def test_a_second_prepare_loads_the_cache_with_the_same_examples_and_report(tmp_path, tokenizer, data_file,
                                                                            monkeypatch):
    path, _ = data_file
    bad = tmp_path / "bad.jsonl"  # skipped and rejected records must come back from a hit too
    bad.write_text(path.read_text(encoding="utf-8") + '{"prompt": "x"}\nnot json\n'
                   + json.dumps({"prompt": "long " * 80, "completion": " y"}) + "\n", encoding="utf-8")
    cfg = _cfg(tmp_path, bad, on_error="skip", overlength="reject")
    first = prepare(cfg, tokenizer)
    assert first.report["skipped"] and first.report["rejected"]
    import tunelab.data as data_pkg

    monkeypatch.setattr(data_pkg, "build_task", lambda *a, **k: pytest.fail("prepared again"))  # a hit builds nothing
    second = prepare(cfg, tokenizer)
    assert second.report == first.report
    uncached = _cfg(tmp_path, bad, cache=False, on_error="skip", overlength="reject")
    monkeypatch.undo()
    third = prepare(uncached, tokenizer)
    assert third.report == first.report
    for split in ("train", "validation", "test"):
        a, b = second.tasks["sums"].splits[split], third.tasks["sums"].splits[split]
        assert isinstance(a, ExampleTable) and isinstance(a.tokens, np.memmap)
        assert list(a) == list(b) and len(a) > 0
    ex = second.tasks["sums"].splits["train"][0]
    assert ex.input_ids == ex.prompt_ids + ex.target_ids and isinstance(ex.input_ids[0], int)
    assert ex.label_ids == [-100] * len(ex.prompt_ids) + ex.target_ids
    entries = [p for p in (tmp_path / "cache").iterdir()]
    assert len(entries) == 1 and not entries[0].name.endswith(".tmp")  # no temporary folder left


def test_a_damaged_entry_is_rebuilt_not_used(tmp_path, tokenizer, data_file, capsys):
    path, _ = data_file
    cfg = _cfg(tmp_path, path)
    prepare(cfg, tokenizer)
    entry = next((tmp_path / "cache").iterdir())
    tokens = entry / "train.tokens.npy"
    raw = bytearray(tokens.read_bytes())
    raw[-1] ^= 0xFF  # one flipped byte: the shapes still agree, the checksum does not
    tokens.write_bytes(bytes(raw))
    again = prepare(cfg, tokenizer)
    assert "damaged" in capsys.readouterr().err
    fresh = prepare(_cfg(tmp_path, path, cache=False), tokenizer)
    assert list(again.tasks["sums"].splits["train"]) == list(fresh.tasks["sums"].splits["train"])
    assert (entry / MANIFEST).is_file()  # stored anew


def test_an_unwritable_cache_warns_and_prepares_anyway(tmp_path, tokenizer, data_file, capsys):
    path, _ = data_file
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    data = prepare(_cfg(tmp_path, path, cache=str(blocker / "cache")), tokenizer)
    assert "could not write the data cache" in capsys.readouterr().err
    assert len(data.tasks["sums"].splits["train"]) > 0


def _all_batches(data, cfg):
    seqs, plan = epoch_plan(data, cfg.train, "causal", cfg.seed, 0, 1)
    return [collate([seqs[i] for i in part], 0).tensors for step in plan for part in step if part]


def test_training_batches_are_bit_identical_with_and_without_the_cache(tmp_path, tokenizer, data_file):
    path, _ = data_file
    other = write_jsonl(tmp_path / "other.jsonl", [{"prompt": f"Say {i}.", "completion": f" {i}"} for i in range(25)])
    tasks = [_task(path), {"name": "say", "kind": "completion", "source": other}]
    mix = {"strategy": "temperature", "temperature": 2.0}
    cached = make_config(tmp_path, tasks, cache=str(tmp_path / "cache"), max_length=64, mixture=mix)
    plain = make_config(tmp_path, tasks, cache=False, max_length=64, mixture=mix)
    for cfg in (cached, plain):
        cfg.train.batch_size, cfg.train.group_by_length = 4, True
    prepare(cached, tokenizer)  # store
    hit, fresh = prepare(cached, tokenizer), prepare(plain, tokenizer)
    assert isinstance(hit.train_epoch(0), EpochView)
    listed = type(hit)(tasks={n: type(t)(**{**t.__dict__, "splits": {s: list(v) for s, v in t.splits.items()}})
                              for n, t in fresh.tasks.items()},
                       mixture_rates=fresh.mixture_rates, mixture=fresh.mixture, seed=fresh.seed)
    a, b, c = _all_batches(hit, cached), _all_batches(fresh, plain), _all_batches(listed, plain)
    assert len(a) == len(b) == len(c) > 3
    for x, y, z in zip(a, b, c):
        assert x.keys() == y.keys() == z.keys()
        assert all(torch.equal(x[k], y[k]) and torch.equal(x[k], z[k]) for k in x)


def test_an_epoch_is_read_from_token_arrays_in_bounded_memory(tmp_path, tokenizer):
    """The bounded-memory path on a small file: collating a whole epoch from the tables allocates
    a fraction of what the same epoch as Python lists of token ids takes (benchmarks/data_bench.py
    measures peak RSS on up to a million rows)."""
    rows = [{"prompt": f"Item {i}: " + "lorem ipsum dolor sit amet " * 8, "completion": f" answer {i}"}
            for i in range(3000)]
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    cfg = make_config(tmp_path, [_task(path)], cache=str(tmp_path / "cache"), max_length=128)
    cfg.train.batch_size = 8
    prepare(cfg, tokenizer)
    data = prepare(cfg, tokenizer)
    table = data.tasks["sums"].splits["train"]
    assert table.tokens.dtype == np.uint16 and isinstance(table.tokens, np.memmap)

    def peak(fn):
        tracemalloc.start()
        fn()
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return result

    def every_batch():
        seqs, plan = epoch_plan(data, cfg.train, "causal", cfg.seed, 0, 1)
        for step in plan:
            for part in step:
                collate([seqs[i] for i in part], 0)

    lazy = peak(every_batch)
    as_lists = peak(lambda: [to_sequences(list(data.train_epoch(0)))])
    assert lazy < as_lists / 4, (lazy, as_lists)


def _old_fingerprint(data):
    """data_fingerprint as it was before #25 (over Examples), which resumed runs were started with."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(data.tasks):
        h.update(name.encode())
        for ex in data.tasks[name].splits["train"]:
            h.update(json.dumps([ex.input_ids, ex.label_ids]).encode())
            if getattr(ex, "rejected_ids", None) is not None or getattr(ex, "desirable", None) is not None:
                h.update(json.dumps([ex.rejected_ids, ex.desirable]).encode())
    return h.hexdigest()


def test_fingerprint_and_train_keys_come_from_the_columns_unchanged(tmp_path, tokenizer, monkeypatch):
    """#25: the resume fingerprint and train_keys.json are read from a cached split's columns,
    byte-identical to what the Examples gave (runs started before resume, the contamination guard
    reads the same keys), and no Example of a table is built (any is refused below)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from tunelab.data.preference import PreferenceExample
    from tunelab.files import write_json
    from tunelab.train.resume import data_fingerprint
    from tunelab.train.setup import _json_keys, write_train_keys

    rows = [{"prompt": f"Item {i % 700}: " + "word " * (i % 700 % 37), "completion": f" é {i}"} for i in range(2000)]
    path = write_jsonl(tmp_path / "rows.jsonl", rows)  # duplicated inputs: fewer keys than rows
    cfg = make_config(tmp_path, [_task(path)], cache=str(tmp_path / "cache"), max_length=40)
    prepare(cfg, tokenizer)
    data = prepare(cfg, tokenizer)
    table = data.tasks["sums"].splits["train"]
    assert isinstance(table, ExampleTable) and isinstance(table.tokens, np.memmap)
    examples = list(table)
    prefs = [PreferenceExample(**vars(ex), rejected_ids=ex.target_ids[:2], desirable=None) for ex in examples[:20]]
    prefs[3] = replace(prefs[3], rejected_ids=None, desirable=True)
    data.tasks["pref"] = replace(data.tasks["sums"], name="pref", splits={"train": prefs})  # a plain list
    listed = replace(data, tasks={"sums": replace(data.tasks["sums"], splits={"train": examples}),
                                  "pref": data.tasks["pref"]})
    expected_keys = {"base_model": "m", "tasks": {n: sorted({ex.content_key for ex in t.splits["train"]})
                                                  for n, t in listed.tasks.items()}}
    assert len(expected_keys["tasks"]["sums"]) < len(examples)
    write_json(tmp_path / "old.json", expected_keys, indent=None)
    old_fingerprint = _old_fingerprint(listed)

    def built(*_):
        raise AssertionError("an Example of the table was built")

    monkeypatch.setattr(ExampleTable, "__getitem__", built)
    monkeypatch.setattr(ExampleTable, "_meta_row", built)
    assert data_fingerprint(data) == old_fingerprint
    for tokens in (1, 50, 1 << 20):  # chunk edges must not change a byte of the hash
        chunks = ExampleTable.label_chunks
        monkeypatch.setattr(ExampleTable, "label_chunks", lambda self, n=tokens, f=chunks: f(self, n))
        assert data_fingerprint(data) == old_fingerprint
        monkeypatch.setattr(ExampleTable, "label_chunks", chunks)
    assert _json_keys(table.unique_content_keys(), 3) == json.dumps(expected_keys["tasks"]["sums"])
    run = tmp_path / "run"
    run.mkdir()
    write_train_keys(SimpleNamespace(data=data, run=run, cfg=SimpleNamespace(model=SimpleNamespace(name="m"))))
    assert (run / "train_keys.json").read_bytes() == (tmp_path / "old.json").read_bytes()
