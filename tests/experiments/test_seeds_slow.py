"""The seed path on the real model (slow): SmolLM2-135M LoRA on SST-2 over two training seeds,
through `tunelab train`, then the base model against the system over its seeds."""

from __future__ import annotations

import json

import pytest
import yaml


@pytest.mark.slow
def test_smollm2_over_two_seeds_is_compared_with_seed_and_example_variance(tmp_path, shared_data, smollm2_dir, capsys):
    from tunelab.cli.main import main

    d = shared_data
    config = tmp_path / "seeds.yaml"
    config.write_text(yaml.safe_dump({
        "name": "sst2-lora", "seed": 0, "output_dir": str(tmp_path / "runs"), "seeds": [0, 1],
        "model": {"name": "smollm2-135m-instruct"},
        "data": {"max_length": 96, "split": {"train": 0.7, "validation": 0.1, "test": 0.2},
                 "tasks": [{"name": "sst2", "kind": "classification",
                            "source": {"path": str(d / "sst2" / "sst2_glue_validation.tsv")},
                            "fields": {"text": "sentence", "label": "label"}, "system_prompt": "Classify sentiment.",
                            "labels": {0: "negative", 1: "positive"}}]},
        "train": {"method": "lora", "lr": 1e-3, "max_steps": 6, "batch_size": 8, "precision": "auto",
                  "progress": "plain", "lora": {"r": 8, "alpha": 16}},
        "forgetting": {"tuned_task": "sst2", "limit": 16, "bootstrap_resamples": 200, "tasks": [
            {"name": "sst2", "max_new_tokens": 4},
            f"t0={d}/t0_multitask_mix/rotten_tomatoes_Movie_Expressed_Sentiment.jsonl,max_new_tokens=4"]},
    }))
    assert main(["train", str(config)]) == 0
    root = tmp_path / "runs" / "sst2-lora"
    assert capsys.readouterr().out.strip() == str(root)
    assert json.loads((root / "seeds.json").read_text()) == {"seeds": [0, 1], "runs": ["seed-0", "seed-1"]}
    losses = [[e["loss"] for e in map(json.loads, (root / f"seed-{s}" / "metrics.jsonl").read_text().splitlines())
               if "loss" in e] for s in (0, 1)]
    assert len(losses[0]) == len(losses[1]) == 6 and losses[0] != losses[1]  # two real trainings

    table = json.loads((root / "compare.json").read_text())
    assert table["seed_paths"][1] == [str(root / "seed-0"), str(root / "seed-1")] and table["seeds"][1] == [0, 1]
    primary = {r["task"]: r for r in table["rows"] if r["primary"]}
    assert set(primary) == {"sst2", "t0_rotten"}
    for row in primary.values():
        value, test = row["values"][1], row["tests"][1]
        assert len(value["per_seed"]) == 2 and value["seed_sd"] >= 0
        assert test["test"].startswith("seeds") and test["n"] == 16 and test["n_seeds"] == [2, 1]
        assert len(test["per_seed_diffs"]) == 2 and isinstance(test["holds_in_every_seed"], bool)
        assert (test["ci"][0] > 0 or test["ci"][1] < 0) == (test["p_value"] < 0.05)
        # each seed's own difference is the one its own forgetting report holds
        for s, diff in enumerate(test["per_seed_diffs"]):
            own = json.loads((root / f"seed-{s}" / "forgetting" / "forgetting.json").read_text())
            assert diff == pytest.approx(next(t["diff"] for t in own["tasks"] if t["task"] == row["task"]))
    assert table["trade_off"][0]["per_seed"] and len(table["trade_off"][0]["per_seed"]) == 2
    text = (root / "compare.md").read_text()
    assert (root / "report.html").exists() and ("holds in every seed" in text or "not in every seed" in text)
