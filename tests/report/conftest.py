"""Report fixtures that need no model: a complete run folder (metrics log, summary, eval results,
a forgetting report) and a comparison of several systems, one of them trained over three seeds.

Both are built through the real writers and scorers (evaluate.forgetting.write_forgetting,
evaluate.compare.compare_runs, the engine's scoring functions), so the report reads what tunelab
itself writes."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import yaml

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


WORDS = ("the team met on monday to plan the launch and agreed to ship the new release after "
         "more tests while anna will write notes for the client").split()


def _summary(rng: random.Random, reference: str, quality: float) -> str:
    """A prediction that keeps each reference word with probability `quality`."""
    return " ".join(w if rng.random() < quality else rng.choice(WORDS) for w in reference.split())


def _write_system(folder: Path, quality: float, nll: float, seed: int | None, n: int = 30,
                  started_from: Path | None = None) -> None:
    """One system's evaluation folder, scored by the engine's own scorers: "summary" (BLEU, 0-100,
    and ROUGE-L), "topic" (accuracy of extracted labels) and "text" (token NLL, a loss)."""
    from tunelab.config.scoring import higher_is_better
    from tunelab.evaluate.scoring import score_generations, score_perplexity

    data = random.Random(7)  # the examples: the same for every system
    refs = [" ".join(data.choice(WORDS) for _ in range(data.randint(6, 12))) for _ in range(n)]
    gold = [data.choice(["business", "science"]) for _ in range(n)]
    tokens = [data.randint(5, 40) for _ in range(n)]
    rng = random.Random(hash((quality, nll, seed)) & 0xFFFF)  # the system's own outputs
    summaries = [{"prediction": _summary(rng, r, quality), "references": [r], "label": None} for r in refs]
    topics = [{"prediction": g if rng.random() < quality else "sports", "references": [g], "label": g} for g in gold]
    texts = [{"logprob": -t * (nll + rng.uniform(-0.3, 0.3)), "n_tokens": t, "n_bytes": 4 * t} for t in tokens]
    scored = {"summary": (summaries, *score_generations(summaries, ["bleu", "rougeL"], n_resamples=200)),
              "topic": (topics, *score_generations(topics, ["accuracy"], labels=["business", "science"],
                                                   n_resamples=200)),
              "text": (texts, *score_perplexity(texts, ["token_nll", "perplexity"], n_resamples=200))}
    folder.mkdir(parents=True)
    results = {"tasks": {}}
    for task, (records, corpus, per) in scored.items():
        for metric, entry in corpus.items():
            entry.setdefault("higher_is_better", higher_is_better(metric))
        with (folder / f"{task}.examples.jsonl").open("w") as f:
            for i, (r, p) in enumerate(zip(records, per)):
                f.write(json.dumps({"index": i, "key": f"test:{task}.jsonl:{i + 1}", "prompt": f"{task} {i}",
                                    "references": r.get("references", []), "prediction": r.get("prediction"),
                                    "label": r.get("label"), "scores": p}) + "\n")
        results["tasks"][task] = {"task": task, "n": n, "primary_metric": next(iter(corpus)), "metrics": corpus,
                                  "labels": ["business", "science"] if task == "topic" else None,
                                  "examples_file": f"{task}.examples.jsonl"}
    (folder / "results.json").write_text(json.dumps(results))
    if seed is not None:  # a training run: its seed, the model it started from, what it trained on
        model = {"name": str(started_from / "final")} if started_from else {}
        (folder / "config.resolved.yaml").write_text(yaml.safe_dump({"seed": seed, "train": {"seed": seed},
                                                                     "model": model}))
        (folder / "train_keys.json").write_text(json.dumps({"tasks": ["summary"]}))


def make_systems(root: Path) -> Path:
    """compare.json of four systems: a base model, "lora" trained over three seeds, "full", and
    "full-then-more", a second stage that continued from full's model."""
    from tunelab.evaluate.compare import compare_runs

    _write_system(root / "base", 0.3, 3.0, None)
    for s in range(3):
        _write_system(root / "lora" / f"seed{s}", 0.55 + 0.05 * s, 3.1 + 0.05 * s, s)
    _write_system(root / "full", 0.75, 3.4, 0)
    _write_system(root / "full-then-more", 0.8, 3.6, 0, started_from=root / "full")
    out = root / "compared"
    compare_runs([str(root / "base"), [str(root / "lora" / f"seed{s}") for s in range(3)], str(root / "full"),
                  str(root / "full-then-more")], output_dir=str(out), tuned_task="summary", n_resamples=200)
    return out


@pytest.fixture
def systems_folder(tmp_path) -> Path:
    return make_systems(tmp_path)


@pytest.fixture
def write_system():
    """The one-system writer above, for tests that build their own comparison."""
    return _write_system
