"""What a training run carries from `setup` through `fit` and `validate` to `finish`.

`Counters` is where training is: it goes into every checkpoint's state.json and comes back on
resume. `TrainState` holds everything else the loop needs (model, optimizer, data, run folder),
as plain attributes: no closures, no globals. `StopRequest` is how a signal handler (installed
only when asked, by the CLI) or a validation callback (the search's pruner) asks the loop to stop
after the current step with a checkpoint.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# on_validation(step, results) -> True to stop training after this step (e.g. a search pruner).
ValidationCallback = Callable[[int, dict], bool]


@dataclass
class Counters:
    """Where training is; saved in every checkpoint (state.json) and restored on resume."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    validated_step: int = -1
    best: dict | None = None  # {"step", "metric", "value"}
    bad_validations: int = 0
    train_tokens: int = 0
    status: str = "running"  # running | completed | early_stopped | interrupted | terminated | stopped | diverged | failed
    logged_data: bool = False

    @classmethod
    def from_checkpoint(cls, state: dict) -> Counters:
        known = {k: state[k] for k in cls.__dataclass_fields__ if k in state}
        return cls(**known)


class StopRequest:
    """Set by a signal handler or a callback; the loop checks it once per step."""

    def __init__(self) -> None:
        self.reason: str | None = None  # the signal this process received
        self.agreed: str | None = None  # the stop every process acts on (loop.stop_agreed)

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    @property
    def status(self) -> str:
        """summary.json's status for this stop: `terminated` (SIGTERM) or `interrupted`."""
        from tunelab.signals import STATUSES

        return STATUSES.get(self.agreed or self.reason, "interrupted")


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest, enabled: bool):
    """While training steps run, SIGINT/SIGTERM ask for a checkpoint and a clean stop after the
    current step instead of killing (tunelab.signals; a second signal stops at once).

    Only when `enabled` (the CLI) and on the main thread: a library call must not take over the
    process's signal handling, and Python allows handlers on the main thread only."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    from tunelab.signals import deferring, handling_signals

    with handling_signals(True), deferring(stop.request, abandon=not several_processes()):
        yield


def several_processes() -> bool:
    """Whether this process trains in step with others (a torch.distributed group of more than one)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@dataclass
class TrainState:
    cfg: Any
    seed: int
    accelerator: Any
    precision: str
    model: Any
    tokenizer: Any
    architecture: str
    data: Any  # tunelab.data.PreparedData
    loss_model: Any  # CompletionLoss; DDP-wrapped by accelerate, or FSDP-sharded, with several processes
    optimizer: Any
    scheduler: Any
    total_steps: int
    n_trainable: int
    n_total: int
    run: Path
    autocast: Any = contextlib.nullcontext  # a context-manager factory (training precision)
    trainable: list = field(default_factory=list)  # parameters with requires_grad (clipped each step)
    scaler: Any = None
    sharded_checkpoints: bool = False  # FSDP: checkpoints through torch.distributed.checkpoint
    regularizer: Any = None  # tunelab.train.regularize.Regularizer (train.regularization), or None
    # preference pairs: collate_preference's shared_prompt and attention_weight (train/preference_batches.py)
    pair_layout: dict = field(default_factory=dict)
    val_sets: dict = field(default_factory=dict)  # task -> list[Sequence] (validation loss)
    val_examples: dict = field(default_factory=dict)  # task -> list[Example] (validation generation)
    counters: Counters = field(default_factory=Counters)
    stop: StopRequest = field(default_factory=StopRequest)
    on_validation: ValidationCallback | None = None
    log: Any = None  # MetricsLog
    lock: Any = None  # RunLock (main process)
    trackers: Any = None  # tunelab.train.trackers.Trackers (main process; empty without report_to)
    progress: Any = None  # Progress display
    started: float = 0.0
    saved_step: int | None = None
    error: str | None = None
    stopped_in: str | None = None  # the phase a signal stopped the run in (summary.json's `phase`)
    process_rss_mb: list | None = None  # peak RSS of each process (several processes, at the end)

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def device(self):
        return self.accelerator.device

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def ckpt_dir(self) -> Path:
        return self.run / "checkpoints"

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id
