"""Evaluation: score models, adapters and runs; measure forgetting; compare runs.

    from tunelab.evaluate import evaluate, measure_forgetting, compare_runs
    evaluate("smollm2-135m-instruct", ["sst2=../shared/data/sst2"], limit=50, output_dir="eval/")

Every number comes from one engine (engine.score_examples). docs/evaluation.md defines every
metric, interval and test.
"""

from __future__ import annotations


def __getattr__(name):
    # Lazy: the CLI imports this package before torch should be loaded.
    if name == "evaluate":
        from tunelab.evaluate.harness import evaluate

        return evaluate
    if name in ("measure_forgetting", "forgetting_during_training"):
        from tunelab.evaluate import forgetting as module

        return getattr(module, name)
    if name == "compare_runs":
        from tunelab.evaluate.compare import compare_runs

        return compare_runs
    raise AttributeError(name)


__all__ = ["compare_runs", "evaluate", "forgetting_during_training", "measure_forgetting"]
