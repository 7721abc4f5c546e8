"""Split provenance and the contamination guard, as the README tells a new user to work: a run tuned on
SST-2 (70/10/20, seed 0), then `tunelab eval --run RUN --task sst2=<the training file>`."""

from __future__ import annotations

import json

import pytest
import yaml

from tunelab.cli.main import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def sst2_run(tmp_path, tiny_model_dir, shared_data, home):
    sst2 = shared_data / "sst2" / "sst2_glue_validation.tsv"
    config = {  # the README's config, on the tiny model
        "name": "sst2-lora", "seed": 0, "output_dir": str(tmp_path / "runs"), "model": {"name": tiny_model_dir},
        "data": {"max_length": 128, "split": {"train": 0.7, "validation": 0.1, "test": 0.2, "stratify": True},
                 "tasks": [{"name": "sst2", "kind": "classification", "source": str(sst2),
                            "fields": {"text": "sentence", "label": "label"},
                            "labels": {0: "negative", 1: "positive"}}]},
        "train": {"method": "lora", "max_steps": 2, "batch_size": 4, "precision": "fp32", "progress": "off"},
    }
    path = tmp_path / "sst2.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    return tmp_path / "runs" / "sst2-lora", sst2


def test_eval_run_scores_the_runs_test_split_and_refuses_training_examples(sst2_run, tmp_path, capsys):
    run, sst2 = sst2_run
    train_keys = set(json.loads((run / "train_keys.json").read_text())["tasks"]["sst2"])
    assert len(train_keys) > 500

    # The README's command: the recipe over the training file scores the run's own test split.
    out = tmp_path / "eval"
    assert main(["eval", "--run", str(run), "--task", f"sst2={sst2}", "--limit", "40", "--max-new-tokens", "2",
                 "--bootstrap", "100", "--output", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    task = res["tasks"]["sst2"]
    assert task["split"] == "test" and res["split_seed"] == 0
    assert task["contamination"] == {"checked_against": [str(run)], "overlap": 0, "n": 40, "examples": [],
                                     "runs": []}
    rows = [json.loads(line) for line in (out / "sst2.examples.jsonl").read_text().splitlines()]
    assert not {r["content_key"] for r in rows} & train_keys
    assert res["model_identity"]["adapter"]["files"]["adapter_model.safetensors"]  # a SHA-256
    assert len(task["example_keys_sha256"]) == 64
    capsys.readouterr()

    # The same file under another name is split differently: its test split holds training examples.
    code = main(["eval", "--run", str(run), "--task", f"sst2={sst2},name=sst2_again", "--limit", "40",
                 "--output", str(tmp_path / "refused")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert "training examples of" in err[0] and str(run) in err[0] and "--allow-train-overlap" in err[0]
    assert not (tmp_path / "refused" / "results.json").exists()  # refused before any model ran

    # Asked for explicitly, it is scored and the overlap is reported.
    assert main(["eval", "--run", str(run), "--task", f"sst2={sst2},name=sst2_again", "--limit", "40",
                 "--max-new-tokens", "2", "--bootstrap", "100", "--allow-train-overlap",
                 "--output", str(tmp_path / "allowed")]) == 0
    allowed = json.loads((tmp_path / "allowed" / "results.json").read_text())["tasks"]["sst2_again"]
    assert allowed["contamination"]["overlap"] > 0 and "training examples" in capsys.readouterr().out
