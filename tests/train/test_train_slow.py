"""Multi-process tests (slow): DDP with 2 CPU processes, continual stages under accelerate launch.

(SmolLM2 LoRA on SST-2 is tests/evaluate/test_slow.py: one real-model run checks training, the
evaluation of base vs tuned and the forgetting report.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tunelab.config import load_config
from tunelab.train import train
from train_helpers import subprocess_env, toy_config, toy_records


def launch_two_processes(config: Path) -> subprocess.CompletedProcess:
    """`tunelab train CONFIG` under `accelerate launch` with two CPU processes (docs/training.md's
    flags: --multi_gpu with no GPU gives CPU processes on gloo)."""
    launcher = Path(sys.executable).parent / "accelerate"
    if not launcher.exists():
        if os.environ.get("CI"):  # make test installs accelerate: a skip would hide a broken setup
            raise AssertionError(f"{launcher} is missing")
        pytest.skip("the accelerate launcher is not installed next to this Python")
    return subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tunelab.cli", "train",
                           str(config)], env=subprocess_env(), capture_output=True, text=True, timeout=600)


def ddp_config(tmp_path, model_dir, name, batch_size):
    """Validation with generation metrics and a forgetting section: under DDP both are scored by
    every process, each a share of the batches (evaluate/shard.py)."""
    raw = toy_config(tmp_path, model_dir, name=name, batch_size=batch_size, n=40, max_steps=4, lr=1e-2,
                     eval_every=2, grad_accum=1, eval_generation={"enabled": True, "limit": 7, "max_new_tokens": 2,
                                                                  "batch_size": 2})
    raw["forgetting"] = {"tasks": ["toy"], "limit": 7, "bootstrap_resamples": 50, "batch_size": 2,
                         "generation": {"max_new_tokens": 2}}
    return raw


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(tmp_path, tiny_model_dir):
    one = train(load_config(data=ddp_config(tmp_path, tiny_model_dir, "one", batch_size=8)))
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(ddp_config(tmp_path, tiny_model_dir, "two", batch_size=4)))
    done = launch_two_processes(config)
    assert done.returncode == 0, done.stderr[-3000:]
    two = tmp_path / "runs" / "two"
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and len(summary["peak_rss_mb_per_process"]) == 2

    def curve(run):
        return [(e["step"], e.get("loss", e.get("val_loss"))) for e in map(json.loads, open(run / "metrics.jsonl"))
                if "loss" in e or "val_loss" in e]

    def generated(run):  # validation generation metrics, by step
        return [{k: v for k, v in e.items() if k.startswith("val_") and "loss" not in k}
                for e in map(json.loads, open(run / "metrics.jsonl")) if e.get("split") == "validation"]

    a, b = curve(one), curve(two)
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 2, 3, 4, 4]
    for (_, x), (_, y) in zip(a, b):
        assert abs(x - y) <= 1e-5 * abs(x), (a, b)
    # Validation generation and the forgetting scores: every row, in order, scored once across
    # the two processes (the weights differ from one process's in the last bits only).
    assert [g.keys() for g in generated(one)] == [g.keys() for g in generated(two)] and generated(two)[0]

    def rows(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    for part in ("validation/toy.examples.jsonl", "forgetting/tuned/toy.examples.jsonl"):
        assert [r["source_index"] for r in rows(one / part)] == [r["source_index"] for r in rows(two / part)], part
    tuned = json.loads((two / "forgetting" / "tuned" / "results.json").read_text())
    assert tuned["work"]["processes"] == 2
    assert (two / "forgetting" / "forgetting.json").exists()


@pytest.mark.slow
def test_continual_stages_call_train_twice_under_two_processes(tmp_path, tiny_model_dir):
    """train() called several times in one process under `accelerate launch` (2 CPU processes): the
    process group survives each run, and the main process alone scores the task x stage matrix."""
    raw = toy_config(tmp_path, tiny_model_dir, name="cl", n=40, max_steps=3, batch_size=2, lr=1e-2)
    task = raw["data"]["tasks"][0]
    other = [{"text": f"item {i} {r['text']}", "label": r["label"]} for i, r in enumerate(toy_records(40, seed=1))]
    raw["data"]["tasks"] = [task, dict(task, name="toy2", source={"records": other})]
    raw["stages"] = [{"name": "first", "tasks": ["toy"]}, {"name": "second", "tasks": ["toy2"]}]
    raw["continual"] = {"eval_limit": 4, "max_new_tokens": 2, "bootstrap_resamples": 50}
    config = tmp_path / "cl.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = launch_two_processes(config)
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "runs" / "cl"
    for stage in ("01-first", "02-second"):
        summary = json.loads((root / "stages" / stage / "summary.json").read_text())
        assert summary["processes"] == 2 and summary["status"] == "completed"
    matrix = json.loads((root / "matrix.json").read_text())
    assert matrix["stages"] == ["base", "01-first", "02-second"]
    assert len(matrix["matrices"]["score"]["scores"]) == 3
