"""train.compile on the three kinds of decoder layer that compile differently: a mixture of experts
(routing breaks the graph into many), per-layer attention types with sliding windows (a dict of
masks), and learned positions with Conv1D projections (GPT-2). Each trains compiled and
uncompiled in bf16: the same first loss within fused-reduction rounding, the runs close after.
All three in one process: each must still compile after the others (dynamo's per-code budget of
graphs, train/compile.py's _own_code). The other causal families of families.py were checked the
same way by hand (docs/training.md)."""

from __future__ import annotations

import json

import pytest

from tunelab.config import load_config
from tunelab.train import train
from test_family_runs import records


def losses(run) -> list[float]:
    return [e["loss"] for e in map(json.loads, open(run / "metrics.jsonl")) if "loss" in e]


@pytest.mark.parametrize("family", ["qwen3_moe", "gemma3", "gpt2"])
def test_compiled_layers_train_as_the_uncompiled(tmp_path, family_dir, family):
    def config(name, compile):
        return load_config(data={
            "name": name, "seed": 1, "output_dir": str(tmp_path / "runs"), "model": {"name": family_dir(family)},
            "data": {"tasks": [{"name": "toy", "kind": "classification", "source": {"records": records()},
                                "fields": {"text": "text", "label": "label"},
                                "labels": {0: "negative", 1: "positive"}}]},
            "train": {"method": "lora", "lora": {"r": 4, "dropout": 0.0}, "lr": 1e-2, "max_steps": 3,
                      "batch_size": 4, "precision": "bf16", "progress": "off", "compile": compile}})

    from torch._dynamo.utils import counters

    plain = train(config("plain", False))
    graphs = counters["stats"]["unique_graphs"]
    compiled = train(config("compiled", True))
    assert counters["stats"]["unique_graphs"] > graphs  # the layers were really compiled
    assert json.loads((compiled / "summary.json").read_text())["compiled"] is True
    a, b = losses(plain), losses(compiled)
    assert len(a) == len(b) == 3
    assert abs(a[0] - b[0]) <= 5e-4 * a[0], (a, b)  # the same weights: forward rounding only
    assert all(abs(x - y) <= 1e-2 * x for x, y in zip(a, b)), (a, b)
