"""The bounded-memory first preparation (data/stream.py) against the held one (data/build.py):
byte-identical examples, counts, skipped and rejected records, leak findings and errors, chunk
boundaries anywhere (a chunk of 3 records); and it is the path every plain task takes, so the
rest of the suite exercises it."""

from __future__ import annotations

import copy
import dataclasses
import json
import tracemalloc

import pytest
from data_helpers import make_config, write_jsonl

from tunelab.data import build, prepare, stream, table
from tunelab.data.build import build_task, streamable
from tunelab.data.errors import DataError

BOOM = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if 'BOOM' in message['content'] %}"
        "{{ nothing.x.y }}{% endif %}{{ message['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _files(tmp_path):
    lines = []
    for i in range(120):  # near-duplicates (case, punctuation) land in different splits: leaks
        n = i % 70
        q = f"Question {n}: what is {n} plus one?" if i % 3 else f"question {n} what is {n} plus one"
        lines.append(json.dumps({"prompt": q + " words" * (n % 13), "completion": f" It is {i}." + " more" * (i % 9)}))
    lines[10:10] = ["{bad json", "[1, 2]", "", json.dumps({"prompt": "no completion"})]
    (tmp_path / "comp.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    labels = ["pos", "neg", "neutral", "7"]
    write_jsonl(tmp_path / "cls.jsonl", [{"text": f"Review {i % 40}: movie {i % 50}", "label": labels[i % 4]}
                                         if i % 31 else {"text": "", "label": "pos"} for i in range(130)])
    chats = []
    for i in range(60):
        answer = f"Hello {i}" + (" BOOM" if i % 7 == 0 else "")
        chats.append({"messages": [{"role": "user", "content": f"Hi {i % 25}"},
                                   {"role": "assistant", "content": answer},
                                   {"role": "user", "content": f"And {i % 20}?"},
                                   {"role": "assistant", "content": "Ok."}]})
    write_jsonl(tmp_path / "chat.jsonl", chats)
    (tmp_path / "boom.jinja").write_text(BOOM, encoding="utf-8")
    write_jsonl(tmp_path / "qa_train.jsonl",
                [{"question": f"Who is {i % 40}?", "context": f"C {i}", "answer": f"P {i}"} for i in range(90)])
    write_jsonl(tmp_path / "qa_test.jsonl",
                [{"question": f"who is {i}", "context": f"C {i}", "answer": f"P {i}"} for i in range(0, 60, 4)])
    write_jsonl(tmp_path / "qa_more.jsonl",
                [{"question": f"Who is {i}??", "context": "C", "answer": "P"} for i in range(5)])


CASES = {
    "completion, skip, truncate": ({"kind": "completion", "source": "comp.jsonl"},
                                   {"on_error": "skip", "max_length": 24}),
    "completion, reject, report": ({"kind": "completion", "source": "comp.jsonl"},
                                   {"on_error": "skip", "max_length": 60, "overlength": "reject",
                                    "leak_check": "report"}),
    "classification, stratified": ({"kind": "classification", "source": "cls.jsonl"}, {"on_error": "skip"}),
    "classification, two sources": ({"kind": "classification", "source": ["cls.jsonl", "cls.jsonl"], "limit": 150},
                                    {"on_error": "skip", "split": {"stratify": False}}),
    "chat, template fails": ({"kind": "chat", "source": "chat.jsonl", "chat_template": True},
                             {"on_error": "skip", "chat_template": "boom.jinja", "max_length": 40}),
    "qa, given splits": ({"kind": "qa", "splits": {"train": "qa_train.jsonl",
                                                   "test": ["qa_test.jsonl", "qa_more.jsonl"]}}, {}),
    "completion, raise": ({"kind": "completion", "source": "comp.jsonl"}, {}),
    "classification, raise": ({"kind": "classification", "source": "cls.jsonl"}, {}),
    "chat, raise": ({"kind": "chat", "source": "chat.jsonl", "chat_template": True}, {"chat_template": "boom.jinja"}),
}


def _prepared(tmp_path, tokenizer, task, data, streaming: bool, monkeypatch, num_proc=None):
    monkeypatch.setattr(build, "STREAMING", streaming)
    monkeypatch.setattr(stream, "CHUNK", 3)  # chunk boundaries fall everywhere
    cfg = make_config(tmp_path, [{"name": "t", **task}], **data)
    d = cfg.data
    try:
        t = build_task(cfg.data.tasks[0], tokenizer, cfg.config_dir, d.max_length, 11, overlength=d.overlength,
                       on_error=d.on_error, split=d.split, leak_check=d.leak_check, chat_template=d.chat_template,
                       num_proc=num_proc)
    except DataError as exc:
        return "error", str(exc)
    assert streamable(cfg.data.tasks[0]) is streaming
    return ({s: [dataclasses.asdict(ex) for ex in t.splits[s]] for s in t.splits},
            t.counts, t.skipped, t.rejected, t.leaks, t.labels, t.label_synonyms, t.chat_template)


@pytest.mark.parametrize("case", list(CASES))
def test_a_chunked_preparation_is_byte_identical_to_the_held_one(tmp_path, tokenizer, case, monkeypatch):
    _files(tmp_path)
    task, data = CASES[case]
    streamed = _prepared(tmp_path, tokenizer, task, data, True, monkeypatch)
    held = _prepared(tmp_path, tokenizer, task, data, False, monkeypatch)
    assert streamed == held
    if case.endswith("raise"):
        assert streamed[0] == "error"
    else:
        assert sum(len(rows) for rows in streamed[0].values()) > 0
    if case in ("completion, skip, truncate", "chat, template fails"):
        assert streamed[2]  # skipped records, listed in the same order
    if case == "completion, skip, truncate":
        assert streamed[1]["duplicates_removed"] > 0 and streamed[1]["truncated"] > 0
    if case == "completion, reject, report":
        assert streamed[3] and any(pair["normalised"] for pair in streamed[4].values())


@pytest.mark.parametrize("case", list(CASES))
def test_worker_processes_give_the_same_result_as_one_process(tmp_path, tokenizer, case, monkeypatch):
    """data.num_proc 2 (chunks of 3 records templated, rendered and tokenised in two worker
    processes) against 1 (no process started): the same examples, counts, skipped and rejected
    records in the same order, leak findings, and the same first error with on_error: raise."""
    _files(tmp_path)
    task, data = CASES[case]
    started = []
    real = stream.Workers

    def workers(processes, *args):
        started.append(processes)
        return real(processes, *args)

    monkeypatch.setattr(stream, "Workers", workers)
    one = _prepared(tmp_path, tokenizer, task, data, True, monkeypatch, num_proc=1)
    two = _prepared(tmp_path, tokenizer, task, data, True, monkeypatch, num_proc=2)
    assert started == ([] if case == "completion, raise" else [1, 2])  # a read error stops it before pass 2
    assert two == one


def test_worker_processes_write_byte_identical_cache_entries(tmp_path, tokenizer, monkeypatch):
    """The cache entry (token, trained, offset columns, the Arrow texts, the manifest) of a
    preparation in two processes is the same bytes as in one: rows reach each split's table at
    the same Arrow batch boundaries (table.CHUNK 5 with worker chunks of 3)."""
    _files(tmp_path)
    monkeypatch.setattr(stream, "CHUNK", 3)
    monkeypatch.setattr(table, "CHUNK", 5)
    entries = {}
    for num_proc in (1, 2):
        cfg = make_config(tmp_path, [{"name": "c", "kind": "completion", "source": "comp.jsonl"},
                                     {"name": "chat", "kind": "chat", "source": "chat.jsonl", "chat_template": True}],
                          on_error="skip", max_length=40, chat_template="boom.jinja", num_proc=num_proc,
                          cache=str(tmp_path / f"cache{num_proc}"))
        prepare(cfg, copy.deepcopy(tokenizer))  # prepare sets the chat template on the tokenizer it gets
        root = tmp_path / f"cache{num_proc}"
        entries[num_proc] = {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(root.glob("*/*"))}
    assert len(entries[1]) == 2 * (1 + 3 * 5)  # two tasks: a manifest and three splits of five files
    assert entries[2] == entries[1]


def test_plain_tasks_take_the_bounded_memory_path_and_hold_no_records(tmp_path, tokenizer, monkeypatch):
    """What CI runs: every task without few-shot examples or preference pairs is prepared a chunk
    at a time (the held reader is never called), and its Python memory stays a fraction of the
    held preparation's (records, drafts and rendered texts are never all alive)."""
    rows = [{"prompt": f"Question number {i}: " + "some words here " * 12, "completion": f" Answer {i}."}
            for i in range(3000)]
    write_jsonl(tmp_path / "big.jsonl", rows)
    cfg = make_config(tmp_path, [{"name": "big", "kind": "completion", "source": "big.jsonl"},
                                 {"name": "shots", "kind": "completion", "source": "big.jsonl", "limit": 50,
                                  "few_shot": 1}], cache=False, max_length=128)
    assert streamable(cfg.data.tasks[0]) and not streamable(cfg.data.tasks[1])

    def peak(streaming: bool) -> int:
        monkeypatch.setattr(build, "STREAMING", streaming)
        monkeypatch.setattr(stream, "CHUNK", 256)
        monkeypatch.setattr(table, "CHUNK", 256)  # texts into Arrow every 256 rows
        tracemalloc.start()
        try:
            task = build_task(cfg.data.tasks[0], tokenizer, cfg.config_dir, 128, 7)
            return tracemalloc.get_traced_memory()[1] - sum(t.tokens.nbytes + t.trained.nbytes + t.offsets.nbytes
                                                            for t in task.splits.values())
        finally:
            tracemalloc.stop()

    held, streamed = peak(False), peak(True)
    assert streamed < held / 5, (streamed, held)  # 13x apart when measured

    held_reader = build._read
    calls = []
    monkeypatch.setattr(build, "STREAMING", True)
    monkeypatch.setattr(build, "_read", lambda *a: calls.append(a[0].name) or held_reader(*a))
    data = prepare(cfg, tokenizer)
    assert calls == ["shots"]  # the few-shot task holds its records; the plain one never does
    assert len(data.tasks["big"].splits["train"]) == 2400


def test_a_file_that_changes_between_the_passes_is_an_error(tmp_path, tokenizer, monkeypatch):
    write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"q {i}", "completion": f"a {i}"} for i in range(20)])
    real = stream.iter_records
    seen = []

    def shrinking(src, *args):
        seen.append(1)
        records = list(real(src, *args))
        yield from records if len(seen) == 1 else records[:-1]

    monkeypatch.setattr(stream, "iter_records", shrinking)
    cfg = make_config(tmp_path, [{"name": "a", "kind": "completion", "source": "a.jsonl"}])
    with pytest.raises(DataError, match="changed while it was prepared"):
        build_task(cfg.data.tasks[0], tokenizer, cfg.config_dir)
