"""One engine, one truth: the same model, task and split give the same per-example predictions and
the same metric values through every command that scores them (issue: one evaluation engine).

A tiny Llama is trained with LoRA on a toy sentiment task (fp32, so training-time validation runs
in the same precision as evaluation), then its validation split is scored by: validation during
training, the `forgetting:` section, `tunelab eval --run`, `tunelab forgetting`, a continual cell
(the same config as a one-stage continual run) and the search objective (a one-trial study of the
same config)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.evaluate.harness import read_examples
from tunelab.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import toy_config  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def config(tmp_path, model_dir, name="run"):
    # LoRA dropout: validation must score with dropout off, as evaluation does.
    raw = toy_config(tmp_path, model_dir, name=name, n=60, lr=2e-2, max_steps=6, eval_every=3,
                     eval_generation={"enabled": True, "limit": 64, "batch_size": 4}, lora={"dropout": 0.3})
    task = raw["data"]["tasks"][0]
    # The task carries its scoring, so every command uses it. One token: the tiny model's first answer
    # token is a label word (a few steps do not teach it to stop), so accuracy and macro-F1 are not 0.
    task["max_new_tokens"] = 1
    raw["data"]["split"] = {"train": 0.6, "validation": 0.4, "test": 0.0}
    raw["forgetting"] = {"tasks": ["toy"], "split": "validation", "limit": None, "bootstrap_resamples": 200}
    return raw


def predictions(rows):
    return [(r["key"], r["prediction"]) for r in rows]


def metric_values(results_task):
    return {m: e["value"] for m, e in results_task["metrics"].items()}


def test_every_command_gives_the_same_predictions_and_numbers(tmp_path, tiny_model_dir, home):
    run = train(load_config(data=config(tmp_path, tiny_model_dir)))

    # 1. validation during training (the final validation scores the final weights)
    validation = read_examples(run / "validation", "toy")
    last = [e for e in map(json.loads, open(run / "metrics.jsonl")) if e.get("split") == "validation"][-1]
    assert last["step"] == 6 and len(validation) == 24
    reference = predictions(validation)
    values = {"accuracy": last["val_accuracy/toy"], "macro_f1": last["val_macro_f1/toy"],
              "unmapped": last["val_unmapped/toy"]}
    assert 0 < values["accuracy"] < 1 and 0 < values["macro_f1"] < 1

    # 2. the forgetting: section, scored at the end of training
    section = json.loads((run / "forgetting" / "tuned" / "results.json").read_text())["tasks"]["toy"]
    assert predictions(read_examples(run / "forgetting" / "tuned", "toy")) == reference
    assert metric_values(section) == values

    # 3. tunelab eval --run: the run's own task by name, on the run's own split
    assert main(["eval", "--run", str(run), "--task", "toy", "--split", "validation", "--bootstrap", "200",
                 "--output", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "results.json").read_text())["tasks"]["toy"]
    assert predictions(read_examples(tmp_path / "eval", "toy")) == reference
    assert metric_values(evaluated) == values
    assert evaluated["contamination"]["overlap"] == 0 and evaluated["split"] == "validation"

    # 4. tunelab forgetting
    assert main(["forgetting", "--tuned", str(run), "--task", "toy", "--split", "validation", "--bootstrap", "200",
                 "--output", str(tmp_path / "forget")]) == 0
    tuned = json.loads((tmp_path / "forget" / "tuned" / "results.json").read_text())["tasks"]["toy"]
    assert predictions(read_examples(tmp_path / "forget" / "tuned", "toy")) == reference
    assert metric_values(tuned) == values

    # 5. a continual cell: the same config as one stage
    from tunelab.experiments import run_continual

    raw = config(tmp_path, tiny_model_dir, name="cl")
    raw.pop("forgetting")
    raw["stages"] = [{"name": "toy", "tasks": ["toy"]}]
    raw["continual"] = {"eval_split": "validation", "bootstrap_resamples": 200}
    root = run_continual(load_config(data=raw), log=lambda s: None)
    cell = json.loads((root / "scores" / "stage-01" / "results.json").read_text())["tasks"]["toy"]
    assert predictions(read_examples(root / "scores" / "stage-01", "toy")) == reference
    assert metric_values(cell) == values
    matrix = json.loads((root / "matrix.json").read_text())["matrices"]["score"]["scores"]
    assert matrix[1][0] == values["accuracy"]

    # 6. the search objective: a one-trial study of the same config
    from tunelab.experiments.search import run_search

    raw = config(tmp_path, tiny_model_dir, name="study")
    raw.pop("forgetting")
    raw["search"] = {"metric": "val_accuracy/toy", "direction": "maximize",
                     "space": {"train.lr": {"type": "categorical", "choices": [2e-2]}}}
    result = run_search(load_config(data=raw), 1, log=lambda s: None)
    trial = result.study_dir / "trials" / "trial-000"
    assert predictions(read_examples(trial / "validation", "toy")) == reference
    run_values = [e["val_accuracy/toy"] for e in map(json.loads, open(run / "metrics.jsonl"))
                  if e.get("split") == "validation"]
    assert result.best_value == max(run_values)
