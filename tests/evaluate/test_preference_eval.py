"""The preference eval kind: a tiny Llama DPO-trained for 3 steps (LoRA) on short pairs, its
`forgetting:` section scoring the test pairs before and after, and `tunelab compare` on the two.

Each pair's log-probs are checked against an independent forward pass (log_softmax, gather on the
answer's tokens), reward_accuracy against the fraction of margins above 0, and both metrics get a
paired test with a CI (exact McNemar for the 0/1 accuracy, the paired bootstrap for the margin)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.config.scoring import check_scoring, task_scoring
from tunelab.evaluate.harness import read_examples
from tunelab.train import train

SPLIT = {"train": 0.5, "validation": 0.0, "test": 0.5}
GOOD = "good great lovely fine superb charming".split()
BAD = "bad awful terrible boring dull weak".split()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def task(folder) -> dict:
    """40 short pairs (the demo file's answers are hundreds of tokens: slow on CPU), chosen and
    rejected of different lengths either way round, so the base model prefers some of each."""
    path = folder / "prefs.jsonl"
    if not path.exists():
        records = [{"prompt": f"Review number {i}: how was the film?",
                    "chosen": f"It was {GOOD[i % 6]}" + " indeed" * (i % 3),
                    "rejected": f"It was {BAD[(i * 5) % 6]}" + " really" * ((i + 1) % 3)} for i in range(40)]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return {"name": "prefs", "kind": "preference", "source": str(path)}


def dpo_config(tmp_path, model_dir) -> dict:
    train_cfg = {"method": "lora", "objective": "dpo", "lr": 1e-2, "scheduler": "constant", "max_steps": 3,
                 "batch_size": 2, "grad_accum": 1, "precision": "fp32", "progress": "off",
                 "lora": {"r": 4}, "preference": {"beta": 0.5}}
    return {"name": "dpo", "seed": 5, "output_dir": str(tmp_path / "runs"), "model": {"name": model_dir},
            "data": {"max_length": 96, "cache": False, "split": SPLIT, "tasks": [task(tmp_path)]},
            "train": train_cfg,
            "forgetting": {"tasks": ["prefs"], "split": "test", "limit": None, "bootstrap_resamples": 200}}


def independent_logps(model, examples) -> list[tuple[float, float]]:
    """Summed log P(answer | prompt) by one plain forward pass per answer: no batching, padding or cache."""
    import torch

    out = []
    with torch.no_grad():
        for ex in examples:
            pair = []
            for answer in (ex.target_ids, ex.rejected_ids):
                ids = torch.tensor([ex.prompt_ids + answer])
                logp = torch.log_softmax(model(input_ids=ids).logits.float()[0], dim=-1)
                start = len(ex.prompt_ids)
                pair.append(float(logp[start - 1: -1].gather(-1, ids[0, start:, None]).sum()))
            out.append(tuple(pair))
    return out


def test_scoring_table_for_preference_tasks():
    assert task_scoring("preference").eval_kind == "preference"
    assert task_scoring("preference").metrics == ["reward_accuracy", "reward_margin"]
    assert task_scoring("preference", "generate").metrics == ["rougeL"]  # generation: the chosen answer
    assert task_scoring("kto").eval_kind == "generate"
    with pytest.raises(ValueError, match="needs a preference task"):
        check_scoring("q", "qa", "preference", None)
    with pytest.raises(ValueError, match="unknown preference metric 'acc'"):
        check_scoring("p", "preference", None, ["acc"])


def test_preference_unit_in_the_vocabulary():
    from tunelab.config.scoring import higher_is_better, scale_of
    from tunelab.metrics.loglikelihood import Preference

    unit = Preference()
    assert unit.keys() == ("reward_accuracy", "reward_margin")
    assert all(unit.higher_is_better(k) and higher_is_better(k) for k in unit.keys())
    assert [scale_of(k) for k in unit.keys()] == ["0-1", "reward_margin"]  # the margin: nats, its own axis
    stats = unit.statistics([{"logp_chosen": -3.0, "logp_rejected": -5.0},
                             {"logp_chosen": -2.0, "logp_rejected": -2.0}])
    assert stats.tolist() == [[1.0, 2.0], [0.0, 0.0]]  # a tie is not a preference for the chosen answer


def test_preference_eval_base_vs_dpo(tmp_path, tiny_model_dir, tokenizer, home):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunelab.config.data import SplitConfig
    from tunelab.data import build_task

    run = train(load_config(data=dpo_config(tmp_path, tiny_model_dir)))
    examples = build_task(task(tmp_path), tokenizer, max_length=96, seed=5, split=SplitConfig(**SPLIT)).splits["test"]
    assert len(examples) == 20 and not any(ex.truncated for ex in examples)
    base_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    expected = {"base": independent_logps(base_model, examples)}
    expected["tuned"] = independent_logps(PeftModel.from_pretrained(base_model, str(run / "final")).eval(), examples)

    for side in ("base", "tuned"):
        folder = run / "forgetting" / side
        rows = read_examples(folder, "prefs")
        assert [r["source"] for r in rows] == [ex.source for ex in examples]
        np.testing.assert_allclose([(r["logp_chosen"], r["logp_rejected"]) for r in rows], expected[side], atol=1e-4)
        for r in rows:
            assert r["margin"] == pytest.approx(r["logp_chosen"] - r["logp_rejected"])
            assert r["correct"] == (r["margin"] > 0)
            assert r["scores"] == {"reward_accuracy": float(r["correct"]), "reward_margin": r["margin"]}
        metrics = json.loads((folder / "results.json").read_text())["tasks"]["prefs"]["metrics"]
        assert list(metrics) == ["reward_accuracy", "reward_margin"]
        assert metrics["reward_accuracy"]["value"] == pytest.approx(np.mean([r["margin"] > 0 for r in rows]))
        assert 0 < metrics["reward_accuracy"]["value"] < 1 or side == "tuned"
        assert metrics["reward_margin"]["value"] == pytest.approx(np.mean([r["margin"] for r in rows]))
        assert all(len(m["ci"]) == 2 and m["higher_is_better"] for m in metrics.values())
    base_rows = read_examples(run / "forgetting" / "base", "prefs")
    tuned_rows = read_examples(run / "forgetting" / "tuned", "prefs")
    assert [r["margin"] for r in tuned_rows] != [r["margin"] for r in base_rows]  # DPO moved the margins

    forgetting = json.loads((run / "forgetting" / "forgetting.json").read_text())
    row = next(r for r in forgetting["tasks"] if r["task"] == "prefs")
    assert row["metric"] == "reward_accuracy" and row["test"] == "exact McNemar" and row["n"] == 20

    assert main(["compare", str(run / "forgetting" / "base"), str(run / "forgetting" / "tuned"),
                 "--output", str(tmp_path / "cmp")]) == 0
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    tests = {r["metric"]: r["tests"][1] for r in table["rows"] if r["task"] == "prefs"}
    assert set(tests) == {"reward_accuracy", "reward_margin"}
    assert tests["reward_accuracy"]["test"] == "exact McNemar"
    assert "bootstrap" in tests["reward_margin"]["test"]
    margin_diff = np.mean([t["margin"] - b["margin"] for t, b in zip(tuned_rows, base_rows)])
    assert tests["reward_margin"]["diff"] == pytest.approx(margin_diff)
    for test in tests.values():
        assert len(test["ci"]) == 2 and 0 < test["p_value"] <= 1
        assert test["ci"][0] <= test["diff"] + 1e-12 <= test["ci"][1] + 1e-12
