"""Prompt datasets: sources -> task templates -> splits -> chat template -> tokens -> mixture.

    from tunelab.data import prepare
    data = prepare(cfg, tokenizer)          # every task of cfg.data, tokenised and split
    data.tasks["sst2"].splits["test"]       # a sequence of Example (data/table.py: compact columns)
    data.train_epoch(0, seed=cfg.seed)      # the mixture's training order for epoch 0
    data.report                             # counts, mixture rates, leaks, skipped records

docs/data.md is the user-facing reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.data.build import build_task
from tunelab.data.cache import cache_root, load_task, store_task, task_key
from tunelab.data.errors import DataError, ErrorPolicy
from tunelab.data.example import Example, TaskData
from tunelab.data.mixture import epoch_counts, epoch_order, mixture_rates
from tunelab.data.progress import DataProgress
from tunelab.data.table import EpochView, ExampleTable
from tunelab.data.templates import use_chat_template
from tunelab.data.tokenize import tokenizer_threads


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

    def train_epoch(self, epoch: int, seed: int | None = None):
        """The mixture's training examples for `epoch`, in a fixed order for (seed, epoch): a view
        over the tasks' tables (no Example is built until asked for), else a list."""
        seed = self.seed if seed is None else seed
        order = epoch_order(self.train_sizes(), self.epoch_counts(), epoch, seed)
        splits = {name: task.splits["train"] for name, task in self.tasks.items()}
        if all(isinstance(split, ExampleTable) for split in splits.values()):
            return EpochView(splits, order)
        return [splits[task][i] for task, i in order]

    def split(self, name: str) -> list[Example]:
        """All tasks' examples of one split, task by task (validation/test)."""
        return [ex for task in self.tasks.values() for ex in task.splits[name]]


def prepare(cfg, tokenizer, progress=None, bars: bool | None = None) -> PreparedData:
    """Read, template, split, tokenise and mix every task of `cfg.data` (an ExperimentConfig).

    `progress(message)`, when given, is called before each task (for a status line); `bars`:
    progress bars of a long preparation (data/progress.py; None: on a terminal only).
    Each task comes from the cache when its inputs are unchanged (data/cache.py, `data.cache`).
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
        tasks[task_cfg.name] = _cached_task(cfg, task_cfg, tokenizer, seed, policy, DataProgress(bars))
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


def _cached_task(cfg, task_cfg, tokenizer, seed: int, policy: ErrorPolicy, bars: DataProgress) -> TaskData:
    """One task from the cache, or built (every core on the tokenizer) and stored there."""
    data = cfg.data
    root = cache_root(data.cache, cfg.config_dir)
    key = task_key(task_cfg, data, tokenizer, cfg.config_dir, seed) if root is not None else None
    if key is not None:
        cached = load_task(root, key)
        if cached is not None:
            policy.skipped.extend(cached.skipped)  # as a build would have left them
            return cached
    with tokenizer_threads(data.num_proc):
        task = build_task(task_cfg, tokenizer, cfg.config_dir, data.max_length, seed, overlength=data.overlength,
                          split=data.split, leak_check=data.leak_check, policy=policy,
                          chat_template=data.chat_template, progress=bars)
    # preference pairs (data/preference.py) are lists of their own Example type: not cached
    cacheable = all(isinstance(split, ExampleTable) for split in task.splits.values())
    if key is not None and cacheable and store_task(root, key, task):
        # read back from the files (memory-mapped): the built columns are freed, and the first
        # run trains on exactly what every later run will load
        return load_task(root, key) or task
    return task


def build_report(prepared: PreparedData) -> dict:
    counts = prepared.epoch_counts()
    return {
        "tasks": {name: {"kind": t.kind, **t.counts, "leaks": t.leaks} for name, t in prepared.tasks.items()},
        "mixture": {"strategy": prepared.mixture.strategy, "rates": prepared.mixture_rates,
                    "epoch_counts": counts, "epoch_size": sum(counts.values())},
        "skipped": [s for t in prepared.tasks.values() for s in t.skipped],
        "rejected": [s for t in prepared.tasks.values() for s in t.rejected],
    }


__all__ = ["DataError", "Example", "ExampleTable", "PreparedData", "TaskData", "build_task", "prepare",
           "use_chat_template"]
