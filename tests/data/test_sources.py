"""Every source format reads the same records, each tagged with where it came from."""

import json

import pytest

from tunelab.config.data import SourceConfig
from tunelab.data.errors import DataError
from tunelab.data.sources import load_records

ROWS = [{"question": "2+2?", "answer": "4"}, {"question": "Capital of Peru, \"please\"?", "answer": "Lima"}]


def test_jsonl_json_csv_tsv_parquet_and_records_agree(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    (tmp_path / "a.json").write_text(json.dumps(ROWS))
    (tmp_path / "a.csv").write_text('question,answer\n2+2?,4\n"Capital of Peru, ""please""?",Lima\n')
    (tmp_path / "a.tsv").write_text('question\tanswer\n2+2?\t4\nCapital of Peru, "please"?\tLima\n')
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.json", "a.csv", "a.tsv", "a.parquet"):
        records = load_records(SourceConfig(path=name), tmp_path)
        assert [r.data for r in records] == ROWS, name
    assert [r.data for r in load_records(SourceConfig(records=ROWS))] == ROWS
    jsonl = load_records(SourceConfig(path="a.jsonl"), tmp_path)
    assert jsonl[1].where.endswith("a.jsonl:2") and jsonl[1].index == 2
    csv_rows = load_records(SourceConfig(path="a.csv"), tmp_path)
    assert csv_rows[1].where.endswith("a.csv:3")


def test_headerless_csv_with_multiline_fields_and_glob(tmp_path):
    (tmp_path / "x_test.csv").write_text('"Line one\nline two",a,b,c,d,B\nQ2,e,f,g,h,A\n')
    (tmp_path / "y_test.csv").write_text("Q3,i,j,k,l,D\n")
    src = SourceConfig(path="*_test.csv", columns=["question", "A", "B", "C", "D", "answer"])
    records = load_records(src, tmp_path)
    assert [r.data["question"] for r in records] == ["Line one\nline two", "Q2", "Q3"]
    # the second record starts on line 3 of x_test.csv: the first spans two lines
    assert records[1].where.endswith("x_test.csv:3")
    assert len(load_records(src, tmp_path, limit=2)) == 2


def test_shared_mmlu_csv_shape(shared_data):
    src = SourceConfig(path=str(shared_data / "mmlu_subset/test/*.csv"),
                       columns=["question", "A", "B", "C", "D", "answer"])
    records = load_records(src)
    assert len(records) == 100 + 135 + 100 + 193 + 234 + 311
    assert all(r.data["answer"] in "ABCD" for r in records)


def test_hub_source_goes_through_datasets_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None):
        calls.append((path, name, split, revision))
        return [{"text": "hello", "label": 1}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    records = load_records(SourceConfig(hub="org/set", config="cfg", split="validation"), limit=5)
    assert calls == [("org/set", "cfg", "validation[:5]", None)]
    assert records[0].data == {"text": "hello", "label": 1} and "org/set/cfg" in records[0].where


def test_hub_source_offline_is_a_clear_data_error():
    with pytest.raises(DataError, match="hub dataset 'no-such-org/no-such-set'"):
        load_records(SourceConfig(hub="no-such-org/no-such-set"))


def test_missing_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: data file not found"):
        load_records(SourceConfig(path="nope.jsonl"), tmp_path)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="set format"):
        load_records(SourceConfig(path="d.txt"), tmp_path)
    assert load_records(SourceConfig(path="d.txt", format="csv", columns=["t"]), tmp_path)[0].data == {"t": "x"}


def test_byte_order_mark_and_non_utf8_lines(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffquestion,answer\nQ,A\n".encode("utf-8"))
    assert load_records(SourceConfig(path="bom.csv"), tmp_path)[0].data == {"question": "Q", "answer": "A"}
    (tmp_path / "latin.jsonl").write_bytes(b'{"t": "ok"}\n{"t": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not UTF-8 text"):
        load_records(SourceConfig(path="latin.jsonl"), tmp_path)
    (tmp_path / "latin.csv").write_bytes(b"t\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin\.csv:2: not UTF-8 text \(byte 4 of the line"):
        load_records(SourceConfig(path="latin.csv"), tmp_path)
