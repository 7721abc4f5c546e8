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
        import importlib

        # The submodule shares the function's name: importing it binds the package attribute to
        # the module, so bind both names to the functions afterwards.
        module = importlib.import_module("tunelab.evaluate.forgetting")
        globals()["forgetting"] = module.forgetting
        globals()["run_retention"] = module.run_retention
        return globals()[name]
    if name == "compare_runs":
        from tunelab.evaluate.compare import compare_runs

        return compare_runs
    raise AttributeError(name)


__all__ = ["compare_runs", "evaluate", "forgetting", "run_retention"]
