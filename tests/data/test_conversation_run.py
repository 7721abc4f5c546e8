"""The glaive ShareGPT tool-calling chats end to end on the tiny model: `data preview` marks every
trained assistant turn, a LoRA run trains on every one of them with a chosen chat template
(data.chat_template: chatml), the run's tokenizer carries that template, and `tunelab forgetting`
scores the run's test split before and after with token F1 and ROUGE-L, stating the template."""

from __future__ import annotations

import json

import pytest
import yaml
from transformers import AutoTokenizer

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.data import prepare
from tunelab.data.preview import TRAINED_START
from tunelab.data.templates import builtin_source

from test_conversations import GLAIVE, SHAREGPT_ROLES, spans


@pytest.fixture
def glaive_config(tmp_path, tiny_model_dir, shared_data, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    config = {
        "name": "glaive-lora", "seed": 0, "output_dir": str(tmp_path / "runs"), "model": {"name": tiny_model_dir},
        "data": {"max_length": 2048, "chat_template": "chatml", "split": {"train": 0.8, "validation": 0, "test": 0.2},
                 "tasks": [{"name": "glaive", "kind": "chat", "source": str(shared_data / GLAIVE), "limit": 20,
                            "metrics": ["token_f1", "rougeL"], "max_new_tokens": 4}]},
        "train": {"method": "lora", "max_steps": 1, "batch_size": 2, "precision": "fp32", "progress": "off"},
    }
    path = tmp_path / "glaive.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_glaive_lora_run_trains_every_turn_and_is_scored_before_and_after(glaive_config, shared_data, tmp_path,
                                                                          capsys):
    records = json.loads((shared_data / GLAIVE).read_text())
    assert main(["data", "preview", str(glaive_config), "--n", "3", "--plain"]) == 0
    shown = capsys.readouterr().out.split("--- glaive / train / ")[1:]
    assert len(shown) == 3
    for block in shown:
        index = int(block.split(": record ", 1)[1].split(" ", 1)[0])
        turns = [m for m in records[index]["conversations"] if SHAREGPT_ROLES[m["from"]] == "assistant"]
        assert block.count(TRAINED_START) == len(turns)
        assert f"<|im_start|>assistant\n{TRAINED_START}{turns[-1]['value']}<|im_end|><<<END>>>" in block

    assert main(["train", str(glaive_config)]) == 0
    run = tmp_path / "runs" / "glaive-lora"
    saved = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert saved["data"]["chat_template"] == "chatml"
    # the adapter's tokenizer carries the chosen template (a base model without one can be chatted with)
    assert AutoTokenizer.from_pretrained(run / "final").chat_template == builtin_source("chatml")

    # the label mask the run trained on: one span per assistant turn, each exactly that turn
    cfg = load_config(run / "config.resolved.yaml")
    tokenizer = AutoTokenizer.from_pretrained(run / "final")
    train = prepare(cfg, tokenizer).tasks["glaive"].splits["train"]
    assert not any(ex.truncated for ex in train)
    for ex in train:
        turns = [m["value"] for m in records[ex.source_index]["conversations"]
                 if SHAREGPT_ROLES[m["from"]] == "assistant"]
        assert [tokenizer.decode(s) for s in spans(ex)] == [t + "<|im_end|>" for t in turns]
    assert sum(len(spans(ex)) > 1 for ex in train) > len(train) // 2

    out = tmp_path / "forgetting"
    assert main(["forgetting", "--tuned", str(run), "--task", "glaive", "--limit", "2", "--bootstrap", "20",
                 "--output", str(out)]) == 0
    for side in ("base", "tuned"):
        task = json.loads((out / side / "results.json").read_text())["tasks"]["glaive"]
        assert task["split"] == "test" and task["n"] == 2
        assert set(task["metrics"]) >= {"token_f1", "rougeL"}
        assert task["chat_template"]["applied"] and task["chat_template"]["template"] == "chatml"
    report = json.loads((out / "forgetting.json").read_text())
    assert [r["task"] for r in report["tasks"]] == ["glaive"]
