"""Bad input, injected for real and run through the CLI: config typos and foreign key names,
names that would become paths outside the output folder, empty and non-UTF-8 data files.

Each test asserts one `tunelab: error:` line naming the key, file or line, no traceback, exit != 0.
"""

from __future__ import annotations

import json

import pytest
import yaml
from fault_helpers import cli_error, subprocess_error, write_config


# -- did-you-mean -------------------------------------------------------------------------------

def test_misspelt_foreign_name_learning_rat_points_to_lr(tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir, train={"learning_rat": 1e-4})
    line = subprocess_error("data", "preview", config)  # the installed script, as a user runs it
    assert line == (f"tunelab: error: {config}: train: unknown key 'learning_rat'; "
                    f"did you mean 'lr' (Hugging Face's learning_rate)?")


@pytest.mark.parametrize("section, key, hint", [
    ("train", "learning_rate", "did you mean 'lr' (Hugging Face's learning_rate)?"),
    ("train", "per_device_train_batch_size",
     "did you mean 'batch_size' (Hugging Face's per_device_train_batch_size)?"),
    ("train", "num_train_epochs", "did you mean 'epochs' (Hugging Face's num_train_epochs)?"),
    ("train", "max_seq_length", "did you mean 'data.max_length' (TRL's max_seq_length)?"),
    ("train", "lora_alpha", "did you mean 'lora.alpha' (PEFT's lora_alpha)?"),
    ("train", "bf16", "did you mean 'precision: bf16' (Hugging Face's bf16)?"),
    ("train", "max_length", "did you mean 'data.max_length'?"),
    (None, "lr", "did you mean 'train.lr'?"),
    (None, "model_name_or_path", "did you mean 'model.name' (Hugging Face's model_name_or_path)?"),
    ("model", "seed", "did you mean 'seed' at the top level?"),
])
def test_foreign_and_misplaced_keys_get_a_did_you_mean(capsys, tmp_path, tiny_model_dir, section, key, hint):
    config = write_config(tmp_path, tiny_model_dir)
    data = yaml.safe_load(config.read_text())
    (data.setdefault(section, {}) if section else data)[key] = 1
    config.write_text(yaml.safe_dump(data))
    line = cli_error(capsys, "data", "preview", config)
    where = f"{section}: " if section else ""
    assert line == f"tunelab: error: {config}: {where}unknown key '{key}'; {hint}"


def test_every_foreign_name_points_to_a_real_key():
    from tunelab.config.hints import FOREIGN, _tree

    ours = _tree().key_paths  # key name -> its dotted paths
    paths = {path for found in ours.values() for path in found}
    for name, (target, _) in FOREIGN.items():
        key = target.partition(": ")[0]
        # a mapping entry (data.tasks[].splits.train) is a real key when its mapping is
        assert key == "--resume" or key in paths or key.rsplit(".", 1)[0] in paths, (name, target)
        assert name not in ours, f"{name} is one of our own keys: the other-section hint covers it"


def test_override_typo_on_the_command_line(capsys, tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    line = cli_error(capsys, "train", config, "train.gradient_accumulation_step=4")
    assert line.endswith("train: unknown key 'gradient_accumulation_step'; "
                         "did you mean 'grad_accum' (Hugging Face's gradient_accumulation_steps)?")
    assert not (tmp_path / "runs").exists()


# -- names that become paths ----------------------------------------------------------------------

@pytest.mark.parametrize("name, problem", [
    ("../../x", "contains the path separator '/'"),
    ("/abs/x", "is an absolute path"),
    ("a/b", "contains the path separator '/'"),
    ("..", "is the parent folder"),
])
def test_run_name_that_is_a_path_is_refused(capsys, tmp_path, tiny_model_dir, name, problem):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    config = write_config(work, tiny_model_dir)
    line = cli_error(capsys, "train", config, f"name={name}")
    assert line.startswith(f"tunelab: error: {config}: name: run name '{name}' {problem}; ")
    assert "no '/' or '\\'" in line and "not '.' or '..'" in line  # says what is allowed
    assert sorted(p.name for p in work.iterdir()) == ["config.yaml"]  # no run folder anywhere
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and not (tmp_path / "a" / "x").exists()


def test_task_name_that_is_a_path_is_refused(capsys, tmp_path, tiny_model_dir):
    config = write_config(tmp_path, tiny_model_dir)
    data = yaml.safe_load(config.read_text())
    data["data"]["tasks"][0]["name"] = "../x"
    config.write_text(yaml.safe_dump(data))
    line = cli_error(capsys, "data", "preview", config)
    assert line.startswith(f"tunelab: error: {config}: data.tasks.0.name: task name '../x' "
                           f"contains the path separator '/'; ")


def test_eval_task_name_that_is_a_path_is_refused(capsys, tmp_path, tiny_model_dir):
    data = tmp_path / "sst2.tsv"
    data.write_text("sentence\tlabel\ngood film\t1\nbad film\t0\n", encoding="utf-8")
    out = tmp_path / "deep" / "er" / "out"
    line = cli_error(capsys, "eval", "--model", tiny_model_dir, "--task", f"sst2={data},name=../../x",
                     "--limit", "2", "--no-cache", "--output", out)
    assert line.startswith("tunelab: error: eval task name '../../x' contains the path separator '/'; ")
    assert not list(tmp_path.rglob("x.examples.jsonl")) and not list(tmp_path.rglob("*.examples.jsonl"))


# -- empty and undecodable data files -----------------------------------------------------------
# A data path is shown relative to the working folder when that is shorter, else absolute
# (data/sources.py). Each test picks its working folder, so that what it expects does not depend
# on where the checkout or pytest's temporary folder sits.

def work_far_below(monkeypatch, tmp_path):
    """Work from a folder so deep below tmp_path that the relative path back is the longer one."""
    deep = tmp_path.joinpath(*["d"] * (len(str(tmp_path)) // 3 + 2))
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)


def _empty_parquet(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}), path)


EMPTY_FILES = {
    "empty.jsonl": (b"", "the file is empty"),
    "blank.jsonl": (b"\n  \n\t\n", "the file is empty"),
    "empty.csv": (b"", "the file is empty"),
    "blank.csv": (b"\n\n", "the file is empty"),
    "header.csv": (b"text,label\n", "the file has a header row and no data rows"),
    "header.tsv": (b"text\tlabel\n\n", "the file has a header row and no data rows"),
    "empty.json": (b"", "the file is empty"),
    "array.json": (b"[ ]\n", "the file is an empty JSON array"),
    "empty.parquet": (b"", "the file is empty"),
    "rows.parquet": (None, "the Parquet file has no rows"),
}


@pytest.mark.parametrize("file_name", list(EMPTY_FILES))
def test_empty_data_file_is_an_error_naming_it(capsys, monkeypatch, tmp_path, tiny_model_dir, file_name):
    content, why = EMPTY_FILES[file_name]
    path = tmp_path / file_name
    if content is None:
        _empty_parquet(path)
    else:
        path.write_bytes(content)
    config = write_config(tmp_path, tiny_model_dir, task={"source": file_name})
    monkeypatch.chdir(tmp_path)  # the file is in the working folder: shown by its name alone
    line = cli_error(capsys, "data", "preview", config)
    assert line == f"tunelab: error: {file_name}: no records ({why})"
    assert "None" not in capsys.readouterr().out


def test_non_utf8_csv_names_file_and_line(capsys, monkeypatch, tmp_path, tiny_model_dir):
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\ngood,1\ncaf\xe9 was dull,0\nfine,1\n")
    config = write_config(tmp_path, tiny_model_dir, task={"source": "reviews.csv"})
    work_far_below(monkeypatch, tmp_path)  # shown absolute
    line = cli_error(capsys, "data", "preview", config)
    assert line == (f"tunelab: error: {path}:3: not UTF-8 text (byte 4 of the line; "
                    f"save the file as UTF-8)")


def test_non_utf8_jsonl_names_file_and_line(capsys, monkeypatch, tmp_path, tiny_model_dir):
    path = tmp_path / "reviews.jsonl"
    path.write_bytes(b'{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n'
                     b'{"text": "ok", "label": 1}\n{"text": "caf\xe9", "label": 0}\n')
    config = write_config(tmp_path, tiny_model_dir, task={"source": "reviews.jsonl"})
    work_far_below(monkeypatch, tmp_path)  # shown absolute
    line = cli_error(capsys, "data", "preview", config)
    assert line == f"tunelab: error: {path}:4: not UTF-8 text (byte 14 of the line; save the file as UTF-8)"


def test_non_utf8_json_names_file_and_line(capsys, monkeypatch, tmp_path, tiny_model_dir):
    path = tmp_path / "reviews.json"
    records = json.dumps([{"text": "good", "label": 1}, {"text": "CAFE", "label": 0}], indent=1)
    path.write_bytes(records.encode().replace(b"CAFE", b"caf\xe9"))
    config = write_config(tmp_path, tiny_model_dir, task={"source": "reviews.json"})
    work_far_below(monkeypatch, tmp_path)  # shown absolute
    line = cli_error(capsys, "data", "preview", config)
    assert line == (f"tunelab: error: {path}:7: not UTF-8 text (byte 15 of the line; "
                    f"save the file as UTF-8)")
