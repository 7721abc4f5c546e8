"""Evaluation: score models, adapters and runs; measure forgetting; compare runs.

    from tunelab.evaluate import evaluate, forgetting, compare_runs, run_retention
    evaluate("smollm2-135m-instruct", ["sst2=../shared/data/sst2"], limit=50, output_dir="eval/")

docs/evaluation.md defines every metric, interval and test.
"""

from __future__ import annotations


def __getattr__(name):
    # Lazy: the CLI imports this package before torch should be loaded.
    if name == "evaluate":
        from tunelab.evaluate.harness import evaluate

        return evaluate
    if name in ("forgetting", "run_retention"):
        # Module retention.py, not forgetting.py: a submodule named like the function would, once
        # imported, shadow the function as the package attribute.
        from tunelab.evaluate import retention

        return getattr(retention, name)
    if name == "compare_runs":
        from tunelab.evaluate.compare import compare_runs

        return compare_runs
    raise AttributeError(name)


__all__ = ["compare_runs", "evaluate", "forgetting", "run_retention"]
