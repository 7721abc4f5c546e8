"""The search's real objective: one training run per trial (`tunelab tune` without a fake).

The trial's validation results reach the Optuna pruner through the training loop's validation
callback (`train(cfg, on_validation=...)`): no log tailing, no signals. With `search.forgetting`
the second objective is the average drop on `search.forgetting_tasks`, measured by the trial run's
own forgetting report (the `forgetting:` section: base vs tuned through the evaluation engine).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tunelab.config import ConfigError
from tunelab.config.schema import ExperimentConfig

def validation_values(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) of every validation event logging `metric` in run_dir/metrics.jsonl."""
    from tunelab.runfolder import RunFolder

    return [(int(e.get("step", 0)), float(e[metric])) for e in RunFolder.of(run_dir).events()
            if metric in e and e.get("split", "validation") == "validation" and e[metric] is not None]


class PruningCallback:
    """The training loop's on_validation callback: hands `metric` to the trial's pruner, collects
    the values, and asks the loop to stop (with a checkpoint) when the pruner says so."""

    def __init__(self, metric: str, report: Callable[[int, float], None]):
        self.metric, self.report = metric, report
        self.values: list[tuple[int, float]] = []
        self.pruned: str | None = None

    def __call__(self, step: int, results: dict) -> bool:
        import optuna

        value = results.get(self.metric)
        if value is None:
            return False
        self.values.append((step, float(value)))
        try:
            self.report(step, float(value))
        except optuna.TrialPruned as exc:
            self.pruned = str(exc) or f"pruned at step {step}"
            return True
        return False


@dataclass
class TrialObjective:
    """The real objective: one tunelab.train run; the best validation value of `search.metric`
    (min or max by `search.direction`), and with `search.forgetting` the average drop on
    `search.forgetting_tasks` measured by the run's forgetting report (tunelab.evaluate)."""

    search: Any
    train_fn: Callable | None = None

    def __call__(self, cfg: ExperimentConfig, report: Callable[[int, float], None]) -> Any:
        import optuna

        from tunelab.report import write_report
        from tunelab.train import train

        callback = PruningCallback(self.search.metric, report)
        run = Path((self.train_fn or functools.partial(train, report=write_report))(cfg, on_validation=callback))
        if callback.pruned:
            raise optuna.TrialPruned(callback.pruned)
        if not callback.values:
            raise ConfigError(f"search.metric: '{self.search.metric}' is not logged by validation in "
                              f"{run / 'metrics.jsonl'}; set train.eval_every or use a logged validation key "
                              f"(e.g. val_loss)")
        values = [v for _, v in callback.values]
        best = min(values) if self.search.direction == "minimize" else max(values)
        if not self.search.forgetting:
            return best
        report_file = run / "forgetting" / "forgetting.json"
        change = json.loads(report_file.read_text(encoding="utf-8"))["summary"]["held_out_change"]
        if change is None:
            raise ConfigError("search.forgetting_tasks: none of them has a bounded metric to average the held-out "
                              "change over (accuracy, exact match, ROUGE, BLEU, acc)")
        return best, -change  # minimised: the drop (the held-out change with the sign flipped)


def make_train_and_validate(search, train_fn=None) -> TrialObjective:
    return TrialObjective(search, train_fn)
