"""Validation events, generation metrics through tunelab.metrics, early stopping and the best checkpoint."""

import json

from tunelab.config import load_config
from tunelab.train import train
from train_helpers import toy_config


def events(run):
    return [json.loads(line) for line in open(run / "metrics.jsonl")]


def test_generation_metrics_and_early_stopping(tmp_path, tiny_model_dir):
    # mode max on val_loss: a falling loss never "improves", so patience 2 stops after 3 validations.
    cfg = toy_config(tmp_path, tiny_model_dir, lr=2e-2, max_steps=12, eval_every=2, eval_at_start=True,
                     eval_generation={"enabled": True, "limit": 4, "max_new_tokens": 2},
                     early_stopping={"metric": "val_loss", "mode": "max", "patience": 2})
    run = train(load_config(data=cfg))
    vals = [e for e in events(run) if e.get("split") == "validation"]
    assert [v["step"] for v in vals] == [0, 2, 4]
    assert all(0.0 <= v["val_accuracy/toy"] <= 1.0 and 0 <= v["val_unmapped/toy"] <= 4 for v in vals)
    assert vals[1]["val_loss"] < vals[0]["val_loss"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "early_stopped" and summary["steps"] == 4
    assert summary["best"] == {"step": 0, "metric": "val_loss", "value": vals[0]["val_loss"]}
    assert (run / "checkpoints" / "step-0").exists()  # the best one is kept
    assert (run / "final" / "adapter_config.json").exists()


def test_unknown_early_stopping_metric_is_a_clear_error(tmp_path, tiny_model_dir):
    import pytest

    from tunelab.config import ConfigError

    cfg = toy_config(tmp_path, tiny_model_dir, max_steps=2, eval_every=1,
                     early_stopping={"metric": "val_acuracy", "mode": "max"})
    with pytest.raises(ConfigError, match="'val_acuracy' is not logged"):
        train(load_config(data=cfg))


def test_validation_scores_with_dropout_off_as_evaluation_does(tmp_path, tiny_model_dir, monkeypatch):
    """LoRA dropout 0.5: the validation callback's numbers must be the evaluation engine's for these
    weights (dropout off), not a noisy draw. A perplexity-scored task shows it to the 6th digit."""
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    from tunelab.evaluate import evaluate

    cfg = toy_config(tmp_path, tiny_model_dir, lr=2e-2, max_steps=4, eval_every=4, lora={"dropout": 0.5},
                     eval_generation={"enabled": True, "limit": 64})
    cfg["data"]["tasks"][0]["eval_kind"] = "perplexity"
    run = train(load_config(data=cfg))
    logged = [e for e in events(run) if e.get("split") == "validation"][-1]["val_token_nll/toy"]
    res = evaluate(None, ["toy"], run=str(run), split="validation", n_resamples=0, cache=False,
                   output_dir=tmp_path / "eval")
    assert abs(res["tasks"]["toy"]["metrics"]["token_nll"]["value"] - logged) <= 1e-5 * abs(logged)
