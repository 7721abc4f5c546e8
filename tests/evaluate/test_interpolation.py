"""Weight interpolation (WiSE-FT) on tiny trained runs: alpha 0 is the base model, alpha 1 the run's
model, 0.5 the mean of their weights; the sweep's comparison, the export at an alpha, the refusals."""

from __future__ import annotations

import json

import pytest
import torch

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.config.base import UserError
from tunelab.config.evaluate import GenerationConfig
from tunelab.evaluate.harness import evaluate, read_examples, run_training_data
from tunelab.evaluate.loading import LazyModel, ModelSpec, model_spec
from tunelab.train import train

TASKS = ["sentiment", "colour"]
WORDS = {1: ["great", "wonderful", "moving", "funny"], 0: ["dull", "boring", "awful", "clumsy"]}
COLOURS = ["red", "blue", "green", "yellow"]
EVAL = {"limit": 6, "n_resamples": 100, "generation": GenerationConfig(max_new_tokens=3)}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))  # a fresh evaluation cache
    return tmp_path / "home"


def run_config(model_dir: str, out, method: str, steps: int = 3) -> dict:
    sentiment = [{"sentence": f"the film number {i} was {WORDS[i % 2][i // 2 % 4]}", "label": i % 2} for i in range(30)]
    colour = [{"prompt": f"Item {i} is {COLOURS[i % 4]}. Its colour?", "completion": COLOURS[i % 4]} for i in range(30)]
    return {"name": method, "seed": 3, "output_dir": str(out), "model": {"name": model_dir},
            "data": {"max_length": 48, "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
                     "tasks": [{"name": "sentiment", "kind": "classification", "source": {"records": sentiment},
                                "fields": {"text": "sentence", "label": "label"},
                                "labels": {0: "negative", 1: "positive"}},
                               {"name": "colour", "kind": "completion", "source": {"records": colour}}]},
            "train": {"method": method, "max_steps": steps, "batch_size": 4, "lr": 2e-2 if method != "full" else 2e-3,
                      "precision": "fp32", "progress": "off", "lora": {"r": 4, "alpha": 8}, "keep_last": 1}}


def rows(folder, task):
    return [(r["key"], r["prediction"], r["scores"]) for r in read_examples(folder, task)]


def base_evaluation(run, model_dir, out):
    """The base model on the run's own split, as `tunelab forgetting` scores it."""
    own = run_training_data(model_spec(run=str(run)))
    return evaluate(model_dir, TASKS, output_dir=out, **own, **EVAL)


def weights_at(spec: ModelSpec) -> dict:
    return {k: v.clone() for k, v in LazyModel(spec).model.state_dict().items()}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_sweep_ends_are_base_and_tuned(method, tiny_model_dir, tmp_path, home, capsys):
    run = train(load_config(data=run_config(tiny_model_dir, tmp_path / "runs", method)))
    out = tmp_path / "sweep"
    if method == "lora":  # the command line, report included
        assert main(["interpolate", str(run), *sum((["--task", t] for t in TASKS), []), "--alphas", "0,0.5,1",
                     "--tuned-task", "sentiment", "--limit", "6", "--bootstrap", "100", "--max-new-tokens", "3",
                     "-o", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "alpha=0.5" in printed and f"report: {out / 'report.html'}" in printed
        assert "curve/trade_off/interpolation" in (out / "report.html").read_text()
    else:
        from tunelab.evaluate.interpolation import interpolation_sweep

        interpolation_sweep(run, TASKS, alphas=(0.5, 1), output_dir=out, tuned_task="sentiment",
                            n_resamples=100, limit=6, generation=EVAL["generation"])
    base = base_evaluation(run, tiny_model_dir, tmp_path / "base")
    tuned = evaluate(None, TASKS, run=str(run), output_dir=tmp_path / "tuned", **EVAL)
    for task in TASKS:
        assert rows(out / "alpha-0", task) == rows(tmp_path / "base", task)
        assert rows(out / "alpha-1", task) == rows(tmp_path / "tuned", task)
    assert base["tasks"]["sentiment"]["example_keys_sha256"] == tuned["tasks"]["sentiment"]["example_keys_sha256"]
    # the tuned model differs from the base: the ends are two models, not one
    assert rows(out / "alpha-0", "colour") != rows(out / "alpha-1", "colour")
    table = json.loads((out / "compare.json").read_text())
    assert table["labels"] == ["alpha=0", "alpha=0.5", "alpha=1"]
    assert table["interpolation"] == {"run": str(run), "alphas": [0.0, 0.5, 1.0], "tuned_task": "sentiment"}
    for row in table["rows"]:
        assert row["tests"][0] is None and all(t["against"] == "alpha-0" for t in row["tests"][1:])
    assert [p["alpha"] for p in table["trade_off"]] == [0.5, 1.0]
    half_point = table["trade_off"][0]
    assert half_point["gain"]["metric"] == "accuracy" and half_point["others"][0]["task"] == "colour"
    assert half_point["others"][0]["held_out"] is False  # the run trained on colour too

    # alpha 0.5: the mean of the base and the (merged) tuned weights, ties kept
    base_w = weights_at(model_spec(tiny_model_dir))
    tuned_w = weights_at(model_spec(run=str(run)))
    half_spec = model_spec(run=str(run), alpha=0.5)
    half = LazyModel(half_spec).model
    assert half.lm_head.weight.data_ptr() == half.model.embed_tokens.weight.data_ptr()
    for name, value in half.state_dict().items():
        torch.testing.assert_close(value, (base_w[name] + tuned_w[name]) / 2, rtol=0, atol=1e-6)
    assert any(not torch.equal(base_w[k], tuned_w[k]) for k in base_w)

    # the export at alpha 0.5 holds those weights and loads in plain transformers
    from transformers import AutoModelForCausalLM

    assert main(["export", str(run), "--merge", "--alpha", "0.5"]) == 0
    folder = run / "export-merged-alpha-0.5"
    exported = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    for name, value in half.state_dict().items():
        assert torch.equal(exported[name], value), name
    assert "alpha = 0.5" in (folder / "README.md").read_text()


def test_refusals_are_one_line(tiny_model_dir, tmp_path, home, capsys):
    cfg = run_config(tiny_model_dir, tmp_path / "runs", "prompt_tuning", steps=1)
    run = train(load_config(data=cfg))
    capsys.readouterr()
    assert main(["interpolate", str(run), "--task", "sentiment", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot be interpolated" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()  # refused before anything was scored
    assert main(["export", str(run), "--merge", "--alpha", "0.5"]) == 2
    assert "cannot be merged" in capsys.readouterr().err
    assert main(["interpolate", str(run), "--task", "sentiment", "--alphas", "0,1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "outside [0, 1]" in err and len(err.splitlines()) == 1
    assert main(["export", str(run), "--alpha", "0.5"]) == 2
    assert "--merge" in capsys.readouterr().err
    with pytest.raises(UserError, match="outside"):
        ModelSpec(tiny_model_dir, alpha=-0.1)
    with pytest.raises(UserError, match="give a run or an adapter"):
        model_spec(tiny_model_dir, alpha=0.5)
