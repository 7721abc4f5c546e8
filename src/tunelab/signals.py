"""SIGINT (Ctrl-C) and SIGTERM stop any tunelab command cleanly, in every phase.

The CLI installs one handler for the whole command (`handling_signals`). A signal then:

- outside training steps (model loading, data preparation, the forgetting section's scoring,
  `tunelab eval`, export...): raises `Stopped` at once, in the batch being computed. Finished
  batches are already in the evaluation cache (written as each batch ends), so a rerun or a
  `--resume` reuses them. Loops also call `check()` between batches.
- while training steps run (`deferring(callback)`, the training loop): only asks, through the
  callback, for a stop after the current step with a checkpoint; a checkpoint being written is
  finished. Validation inside training checks between batches and is abandoned (redone on resume),
  except with several processes (`deferring(callback, abandon=False)`): there every process must
  run the same collectives, and a launcher's signal reaches each at its own moment, so validation
  finishes and the processes agree on the stop at the step's end (train/loop.py).
- a second signal stops at once, wherever it comes.

`Stopped` is a KeyboardInterrupt (code that handles Ctrl-C handles it too) that knows its signal,
the phase it came in, the exit code (130 SIGINT, 143 SIGTERM) and summary.json's status
(`interrupted`, `terminated`). Library calls install nothing unless asked: Python allows handlers
on the main thread only, and a library must not take over its caller's signals.
"""

from __future__ import annotations

import contextlib
import signal
import threading

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
STATUSES = {"SIGINT": "interrupted", "SIGTERM": "terminated"}


class Stopped(KeyboardInterrupt):
    """A signal stopped the command: `signal` (SIGINT/SIGTERM), the `phase` it came in, and where
    the caller knows it, the training `step` and a `hint` (what to run to continue)."""

    def __init__(self, signal_name: str = "SIGINT", phase: str | None = None):
        super().__init__(f"{signal_name} during {phase or 'startup'}")
        self.signal, self.phase = signal_name, phase
        self.step: int | None = None
        self.hint: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal, 130)

    @property
    def status(self) -> str:
        return STATUSES.get(self.signal, "interrupted")

    def line(self) -> str:
        """The one line the CLI ends with."""
        text = f"tunelab: {self.status} during {self.phase or 'startup'}"
        if self.step is not None:
            text += f" at step {self.step}"
        return text + (f"; {self.hint}" if self.hint else "")


class _Signals:
    """The process's signal state (signals are process-wide, so is this)."""

    def __init__(self) -> None:
        self.installed = 0
        self.received: str | None = None  # the first signal's name, until reset()
        self.received_in: str | None = None  # the phase it came in
        self.phases: list[str] = []
        self.deferred: list = []  # callbacks of the open deferring() blocks, innermost last
        self.abandon: list[bool] = []  # whether check() raises for a signal each block held back

    @property
    def phase(self) -> str | None:
        return self.phases[-1] if self.phases else None


STATE = _Signals()


def _on_signal(signum, frame) -> None:
    name = signal.Signals(signum).name
    if STATE.received is not None:  # a second signal: now
        raise Stopped(name, STATE.phase)
    STATE.received, STATE.received_in = name, STATE.phase
    if STATE.deferred:
        STATE.deferred[-1](name)
        return
    raise Stopped(name, STATE.phase)


@contextlib.contextmanager
def handling_signals(enabled: bool = True):
    """SIGINT/SIGTERM raise `Stopped` (or, in a `deferring` block, ask for a stop) while inside.
    Nested blocks share the outer one's handler; nothing happens unless `enabled` and on the main thread."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    if STATE.installed:
        STATE.installed += 1
        try:
            yield
        finally:
            STATE.installed -= 1
        return
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    STATE.installed, STATE.received, STATE.received_in = 1, None, None
    try:
        yield
    finally:
        STATE.installed = 0
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferring(callback, abandon: bool = True):
    """Inside: a first signal calls callback(signal_name) instead of raising (training steps: stop
    after this step, with a checkpoint). `abandon`: whether check() between batches then raises
    (one process) or leaves the stop to the callback's owner (several processes in step)."""
    STATE.deferred.append(callback)
    STATE.abandon.append(abandon)
    try:
        yield
    finally:
        STATE.deferred.pop()
        STATE.abandon.pop()


@contextlib.contextmanager
def in_phase(name: str):
    """Name the phase a signal would stop (summary.json's `phase`, the CLI's line)."""
    STATE.phases.append(name)
    try:
        yield
    finally:
        STATE.phases.pop()


def requested() -> str | None:
    """The signal received (SIGINT/SIGTERM) while handlers are installed, or None."""
    return STATE.received if STATE.installed else None


def received_in() -> str | None:
    return STATE.received_in


def check() -> None:
    """Between batches: raise `Stopped` if a signal came (also one a `deferring` block held back,
    unless that block said not to abandon work)."""
    if STATE.installed and STATE.received is not None and (not STATE.abandon or STATE.abandon[-1]):
        raise Stopped(STATE.received, STATE.phase)


def reset() -> None:
    """Forget a handled signal (a study goes on to its next system only in tests; the CLI exits)."""
    STATE.received = STATE.received_in = None
