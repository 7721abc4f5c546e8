"""Prompt datasets: sources -> task templates -> splits -> chat template -> tokens -> mixture.

    from tunelab.data import prepare
    data = prepare(cfg, tokenizer)          # every task of cfg.data, tokenised and split
    data.tasks["sst2"].splits["test"]       # list[Example]
    data.train_epoch(0, seed=cfg.seed)      # the mixture's training order for epoch 0
    data.report                             # counts, mixture rates, leaks, skipped records

docs/data.md is the user-facing reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.data.build import build_task
from tunelab.data.errors import DataError, ErrorPolicy
from tunelab.data.example import Example, TaskData
from tunelab.data.mixture import epoch_counts, epoch_order, mixture_rates
from tunelab.data.templates import use_chat_template


@dataclass
class PreparedData:
    tasks: dict[str, TaskData]
    mixture_rates: dict[str, float]
    mixture: object = None  # the MixtureConfig the rates came from
    seed: int = 42
    report: dict = field(default_factory=dict)

    def train_sizes(self) -> dict[str, int]:
        return {name: len(task.splits["train"]) for name, task in self.tasks.items()}

    def epoch_counts(self) -> dict[str, int]:
        m = self.mixture
        return epoch_counts(self.train_sizes(), self.mixture_rates, m.strategy, m.cap, m.epoch_size)

    def train_epoch(self, epoch: int, seed: int | None = None) -> list[Example]:
        """The mixture's training examples for `epoch`, in a fixed order for (seed, epoch)."""
        seed = self.seed if seed is None else seed
        order = epoch_order(self.train_sizes(), self.epoch_counts(), epoch, seed)
        return [self.tasks[task].splits["train"][i] for task, i in order]

    def split(self, name: str) -> list[Example]:
        """All tasks' examples of one split, task by task (validation/test)."""
        return [ex for task in self.tasks.values() for ex in task.splits[name]]


def prepare(cfg, tokenizer, progress=None) -> PreparedData:
    """Read, template, split, tokenise and mix every task of `cfg.data` (an ExperimentConfig).

    `progress(message)`, when given, is called before each task (for a status line).
    A `data.chat_template` choice is set on `tokenizer` itself, so that the tokenizer a run saves
    with its model carries the template the model was trained with."""
    data = cfg.data
    if not data.tasks:
        raise DataError("the config has no data.tasks: add at least one task (see docs/data.md)")
    use_chat_template(tokenizer, data.chat_template, cfg.config_dir)
    seed = data.split.seed if data.split.seed is not None else cfg.seed
    policy = ErrorPolicy(data.on_error)
    tasks = {}
    from tunelab.signals import check

    for i, task_cfg in enumerate(data.tasks, start=1):
        check()  # a signal held back (or missed by a long C call) stops here, between tasks
        if progress is not None:
            progress(f"task {i}/{len(data.tasks)}: {task_cfg.name} ({task_cfg.kind})")
        tasks[task_cfg.name] = build_task(
            task_cfg, tokenizer, cfg.config_dir, data.max_length, seed, overlength=data.overlength,
            split=data.split, leak_check=data.leak_check, policy=policy, chat_template=data.chat_template,
        )
    mix = data.mixture
    weights = dict(mix.weights or {})
    for task_cfg in data.tasks:
        if task_cfg.weight is not None:
            weights.setdefault(task_cfg.name, task_cfg.weight)
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
        raise DataError(f"data.mixture.weights names unknown task(s): {', '.join(unknown)}")
    sizes = {name: len(t.splits["train"]) for name, t in tasks.items()}
    try:
        rates = mixture_rates(sizes, mix.strategy, mix.cap, mix.temperature, weights)
    except ValueError as exc:
        raise DataError(f"data.mixture: {exc}") from None
    prepared = PreparedData(tasks=tasks, mixture_rates=rates, mixture=mix, seed=seed)
    prepared.report = build_report(prepared)
    return prepared


def build_report(prepared: PreparedData) -> dict:
    counts = prepared.epoch_counts()
    return {
        "tasks": {name: {"kind": t.kind, **t.counts, "leaks": t.leaks} for name, t in prepared.tasks.items()},
        "mixture": {"strategy": prepared.mixture.strategy, "rates": prepared.mixture_rates,
                    "epoch_counts": counts, "epoch_size": sum(counts.values())},
        "skipped": [s for t in prepared.tasks.values() for s in t.skipped],
        "rejected": [s for t in prepared.tasks.values() for s in t.rejected],
    }


__all__ = ["DataError", "Example", "PreparedData", "TaskData", "build_task", "prepare", "use_chat_template"]
