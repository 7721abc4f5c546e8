"""Bad input: one clear error naming file, line and field per defect class; opt-in skip mode
lists every skipped record; the CLI prints one line and no traceback."""

import json
import os
import subprocess
import sys

import pytest

from tunelab.data import DataError, prepare

from data_helpers import make_config

GOOD = {"text": "a fine film", "label": 1}


def _reviews(tmp_path, bad_line: str) -> str:
    lines = [json.dumps(GOOD), json.dumps({"text": "a dull film", "label": 0}), bad_line, json.dumps(GOOD)]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


TASK = {"name": "reviews", "kind": "classification", "source": "bad.jsonl",
        "labels": {0: "negative", 1: "positive"}}

CASES = {
    "malformed JSON line": ('{"text": "oops", "label": 1', "malformed JSON", None),
    "missing field": ('{"label": 1}', "missing field 'text'", "text"),
    "wrong type": ('{"text": ["a", "list"], "label": 1}', "field 'text' must be text, got a list", "text"),
    "empty text": ('{"text": "   ", "label": 0}', "field 'text' is empty", "text"),
    "unknown label": ('{"text": "meh", "label": 7}', "field 'label': unknown label '7'", "label"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_defect_class_names_file_line_and_field(tmp_path, tokenizer, case):
    bad_line, expected, field = CASES[case]
    _reviews(tmp_path, bad_line)
    with pytest.raises(DataError) as err:
        prepare(make_config(tmp_path, [TASK]), tokenizer)
    message = str(err.value)
    assert "bad.jsonl:3:" in message and expected in message, message
    if field:
        assert f"'{field}'" in message


def test_skip_mode_lists_every_skipped_record(tmp_path, tokenizer):
    lines = [json.dumps(GOOD)] * 6 + ['{"text": ', '{"label": 0}', '{"text": "ok", "label": "maybe"}']
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    data = prepare(make_config(tmp_path, [TASK], on_error="skip", leak_check="report"), tokenizer)  # 6 equal records
    skipped = data.report["skipped"]
    assert len(skipped) == 3
    assert [s.split(": ", 1)[0].rsplit(":", 1)[1] for s in skipped] == ["7", "8", "9"]
    counts = data.tasks["reviews"].counts
    assert counts["read"] == 9 and counts["skipped"] == 3 and counts["kept"] == 6


def test_bad_csv_row_and_template_errors(tmp_path, tokenizer):
    (tmp_path / "q.csv").write_text("question,answer\nWhat?,yes\nToo,many,columns\n")
    task = {"name": "qa", "kind": "qa", "source": "q.csv"}
    with pytest.raises(DataError, match=r"q\.csv:3: row has 3 columns, expected 2"):
        prepare(make_config(tmp_path, [task]), tokenizer)
    (tmp_path / "q.csv").write_text("question,answer\nWhat?,yes\n")
    with pytest.raises(DataError, match=r"q\.csv:2: task 'qa' template: 'nope' is undefined"):
        prepare(make_config(tmp_path, [{**task, "template": "{{ nope }}"}]), tokenizer)
    with pytest.raises(DataError, match="template syntax error on line 1"):
        prepare(make_config(tmp_path, [{**task, "template": "{{ question "}]), tokenizer)


CLI_SCRIPT = """
import contextlib, io, json, sys
from tunelab.cli.main import main
results = []
for cfg in sys.argv[1:]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(["data", "preview", cfg, "--n", "0"])
        except BaseException as exc:  # a traceback would escape here
            rc = repr(exc)
    results.append({"rc": rc, "stderr": err.getvalue()})
print(json.dumps(results))
"""


def test_cli_prints_one_line_without_traceback_for_every_defect_class(tmp_path):
    configs = []
    for i, (case, (bad_line, expected, _)) in enumerate(CASES.items()):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        _reviews(folder, bad_line)
        cfg = folder / "c.yaml"
        cfg.write_text(json.dumps({"data": {"tasks": [TASK]}}))
        configs.append((case, expected, str(cfg)))
    out = subprocess.run([sys.executable, "-c", CLI_SCRIPT, *[c for _, _, c in configs]], capture_output=True,
                         text=True, env={**os.environ, "TUNELAB_DEBUG": ""})
    assert out.returncode == 0, out.stderr
    for (case, expected, _), result in zip(configs, json.loads(out.stdout)):
        assert result["rc"] == 2, (case, result)
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert "Traceback" not in result["stderr"], case
        errors = [line for line in lines if line.startswith("tunelab: error:")]
        assert len(errors) == 1 and "bad.jsonl:3:" in errors[0] and expected in errors[0], (case, lines)
