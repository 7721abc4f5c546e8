"""One preference score, whichever command computes it: a pair's logp_chosen, logp_rejected,
margin and correct, and a task's reward_accuracy and reward_margin (value, CI, n), are the same
from `tunelab eval` (base model, and the run's model), from the run's `forgetting:` section, and
from `tunelab forgetting`, on the same model and test pairs. Each command scores afresh (--no-cache,
`forgetting.cache: false`): equal because the commands share one engine, not one cache.

A tiny random Llama DPO-trained two steps (LoRA), on short pairs and on the real LLaMA-Factory
pairs (../shared/data/preferences/llamafactory_dpo_en_demo.json: its first 40, 6 test pairs
scored, since their answers are hundreds of tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tunelab.cli.main import main
from tunelab.evaluate.harness import read_examples

GOOD = "good great lovely fine superb charming".split()
BAD = "bad awful terrible boring dull weak".split()
PAIR_KEYS = ("key", "source", "logp_chosen", "logp_rejected", "margin", "correct", "scores")
METRICS = ("reward_accuracy", "reward_margin")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def short_pairs(folder: Path) -> dict:
    """40 pairs, chosen and rejected of different lengths either way round (the base model
    prefers some of each, so reward_accuracy is neither 0 nor 1)."""
    path = folder / "prefs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Review number {i}: how was the film?",
                                        "chosen": f"It was {GOOD[i % 6]}" + " indeed" * (i % 3),
                                        "rejected": f"It was {BAD[(i * 5) % 6]}" + " really" * ((i + 1) % 3)}) + "\n"
                            for i in range(40)))
    return {"task": {"name": "prefs", "kind": "preference", "source": str(path)}, "max_length": 96, "limit": None}


def demo_pairs(shared: Path, folder: Path) -> dict:
    """The real file's first 40 pairs, as they are (preparing all 300 four times is the slow part)."""
    records = json.loads((shared / "preferences" / "llamafactory_dpo_en_demo.json").read_text(encoding="utf-8"))
    path = folder / "llamafactory_dpo_en_demo.json"
    path.write_text(json.dumps(records[:40], ensure_ascii=False), encoding="utf-8")
    return {"task": {"name": "prefs", "kind": "preference", "source": str(path)}, "max_length": 768, "limit": 6}


def write_config(folder: Path, model_dir: str, data: dict) -> Path:
    scoring = {"tasks": ["prefs"], "split": "test", "limit": data["limit"], "bootstrap_resamples": 200,
               "batch_size": 4, "cache": False}
    cfg = {"name": "dpo", "seed": 5, "output_dir": str(folder / "runs"), "model": {"name": model_dir},
           "data": {"max_length": data["max_length"], "cache": False,
                    "split": {"train": 0.5, "validation": 0.0, "test": 0.5}, "tasks": [data["task"]]},
           "train": {"method": "lora", "objective": "dpo", "lr": 1e-2, "scheduler": "constant", "max_steps": 2,
                     "batch_size": 2, "precision": "fp32", "progress": "off", "lora": {"r": 4},
                     "preference": {"beta": 0.5}},
           "forgetting": scoring, "eval": scoring}
    path = folder / "dpo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def scored(folder: Path) -> tuple[list[dict], dict]:
    """The per-pair rows and the task's metrics of one evaluation folder."""
    rows = [{k: r.get(k) for k in PAIR_KEYS} for r in read_examples(folder, "prefs")]
    entry = json.loads((folder / "results.json").read_text())["tasks"]["prefs"]
    return rows, {m: {k: entry["metrics"][m][k] for k in ("value", "ci", "n")} for m in METRICS}


@pytest.mark.parametrize("pairs", ["short", "llamafactory"])
def test_eval_and_forgetting_give_the_same_reward_accuracy(pairs, tmp_path, tiny_model_dir, home, request):
    data = short_pairs(tmp_path) if pairs == "short" else demo_pairs(request.getfixturevalue("shared_data"), tmp_path)
    config = write_config(tmp_path, tiny_model_dir, data)
    assert main(["train", str(config)]) == 0  # with its forgetting: section, before and after
    run = tmp_path / "runs" / "dpo"
    out = tmp_path / "out"
    common = ["--config", str(config), "--no-cache", "--batch-size", "4", "--bootstrap", "200"]
    assert main(["eval", "--model", tiny_model_dir, *common, "--output", str(out / "eval-base")]) == 0
    assert main(["eval", "--run", str(run), *common, "--output", str(out / "eval-tuned")]) == 0
    assert main(["forgetting", "--tuned", str(run), *common, "--output", str(out / "forgetting")]) == 0

    margins = {side: [r["margin"] for r in read_examples(out / f"eval-{side}", "prefs")] for side in ("base", "tuned")}
    assert margins["base"] != margins["tuned"]  # eval --run scored the tuned model, which DPO moved
    for side in ("base", "tuned"):
        sources = {"eval": out / f"eval-{side}", "forgetting: section": run / "forgetting" / side,
                   "tunelab forgetting": out / "forgetting" / side}
        results = {name: scored(folder) for name, folder in sources.items()}
        rows, metrics = results["eval"]
        assert len(rows) == (20 if pairs == "short" else 6) and all(r["logp_chosen"] is not None for r in rows)
        if side == "base" and pairs == "short":
            assert 0 < metrics["reward_accuracy"]["value"] < 1  # a score that could differ, not a constant
        for name, (other_rows, other_metrics) in results.items():
            assert other_rows == rows, (side, name)  # every pair, every field, to the last bit
            assert other_metrics == metrics, (side, name)
        # forgetting.json's base and tuned numbers are these results too
        for report in (run / "forgetting" / "forgetting.json", out / "forgetting" / "forgetting.json"):
            row = next(r for r in json.loads(report.read_text())["tasks"] if r["task"] == "prefs")
            assert row["metric"] in METRICS and row[side]["value"] == metrics[row["metric"]]["value"]
            assert row[side].get("ci") in (None, metrics[row["metric"]]["ci"])
    # the paired comparison of both forgetting reports: the same diff, CI and p
    paired = [next(r for r in json.loads(p.read_text())["tasks"] if r["task"] == "prefs")
              for p in (run / "forgetting" / "forgetting.json", out / "forgetting" / "forgetting.json")]
    assert [(p["diff"], p["ci"], p["p_value"]) for p in paired] == [(paired[0]["diff"], paired[0]["ci"],
                                                                      paired[0]["p_value"])] * 2
