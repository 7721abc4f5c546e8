"""A synthetic but complete run folder: metrics log, summary, eval results and a forgetting report.

Built through the real writers (evaluate.forgetting.write_forgetting), so the report reads what
tunelab itself writes, without needing a model."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest


def _write_eval(folder: Path, tasks: dict[str, list[float]], predictions: dict[str, list[str]]) -> dict:
    from tunelab.evaluate.scoring import _mean_metric

    folder.mkdir(parents=True, exist_ok=True)
    results = {"tasks": {}}
    for task, scores in tasks.items():
        metric = "accuracy" if task == "sst2" else "rougeL"
        rows = [{"index": i, "key": f"test:data.jsonl:{i + 1}", "prompt": f"<|im_start|>user\nexample {i} of {task}",
                 "references": [f"reference {i}"], "prediction": predictions[task][i], "scores": {metric: s}}
                for i, s in enumerate(scores)]
        with (folder / f"{task}.examples.jsonl").open("w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        entry = _mean_metric(scores, 200, 0.95)
        entry["higher_is_better"] = True
        results["tasks"][task] = {"task": task, "kind": "generate", "n": len(scores), "primary_metric": metric,
                                  "metrics": {metric: entry}, "examples_file": f"{task}.examples.jsonl"}
    (folder / "results.json").write_text(json.dumps(results))
    return results


def make_run(root: Path) -> Path:
    from tunelab.evaluate.forgetting import write_forgetting

    rng = random.Random(0)
    run = root / "sst2-lora"
    run.mkdir(parents=True)
    events = []
    for step in range(1, 61):
        events.append({"step": step, "epoch": 0, "loss": 2.5 * math.exp(-step / 25) + 0.3 + rng.random() * 0.05,
                       "lr": 1e-4, "tokens_per_s": 400.0})
        if step % 20 == 0:
            events.append({"step": step, "split": "validation", "val_loss": 2.0 * math.exp(-step / 30) + 0.4})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    (run / "summary.json").write_text(json.dumps({
        "status": "completed", "method": "lora", "base_model": "smollm2-135m-instruct", "steps": 60, "wall_s": 312.5,
        "train_tokens": 120000, "trainable_params": 921600, "total_params": 135436800, "peak_rss_mb": 2210.0,
        "best_val_loss": 0.55}))
    n = 40
    base = {"sst2": [float(rng.random() < 0.5) for _ in range(n)],
            "dialogsum": [rng.uniform(0.1, 0.3) for _ in range(n)],
            "t0_samsum": [rng.uniform(0.1, 0.3) for _ in range(n)]}
    tuned = {"sst2": [float(rng.random() < 0.9) for _ in range(n)],
             "dialogsum": [max(0.0, s - rng.uniform(0.0, 0.08)) for s in base["dialogsum"]],
             "t0_samsum": [s + rng.uniform(-0.02, 0.02) for s in base["t0_samsum"]]}
    before_preds = {t: [f"base answer {i} <b>&amp;</b>" for i in range(n)] for t in base}
    after_preds = {t: [f"tuned answer {i}" for i in range(n)] for t in base}
    b = _write_eval(run / "forgetting" / "base", base, before_preds)
    a = _write_eval(run / "forgetting" / "tuned", tuned, after_preds)
    write_forgetting(b, a, run / "forgetting" / "base", run / "forgetting" / "tuned", run / "forgetting", "sst2", 500)
    return run


@pytest.fixture
def synthetic_run(tmp_path) -> Path:
    return make_run(tmp_path)
