"""Progress display and time accounting of one start of a run.

`Progress` shows training steps: a tqdm bar on a terminal, plain log lines otherwise (CI, files).
Its ETA is for the remaining training steps only, from the time the steps of this start took
(not the model loading, the forgetting section's scoring, validation or checkpoints), and the
line says so. `Clock` adds up where this start's wall time went, by phase (summary.json's
`phase_s`; run.py adds the earlier starts of the run).
"""

from __future__ import annotations

import contextlib
import sys
import time

# What summary.json's phase_s names: setup (model, data, optimizer, checkpoint restore), the
# forgetting section's scoring before and after training, training steps, validation, checkpoint
# and final-model writes. Time in none of them (trackers, the report) is only in wall_s.
PHASES = ("setup", "pre_scoring", "training", "validation", "saving", "post_scoring")


class Clock:
    """Wall time of this start by phase. Phases nest (a checkpoint of the best step written inside
    validation): the inner phase's time is its own, not also the outer one's."""

    def __init__(self) -> None:
        self.began = time.perf_counter()
        self.phases = dict.fromkeys(PHASES, 0.0)
        self.earlier: dict | None = None  # the run's earlier starts (run.py reads them once)
        self._open: list[float] = []  # time spent in phases nested inside each open phase
        self._opened: list[tuple[str, float]] = []  # (name, start) of each open phase, innermost last

    def begin(self, at: float) -> None:
        """This start began at `at` (perf_counter): the time until now was setup."""
        self.phases["setup"] += time.perf_counter() - at
        self.began = min(self.began, at)

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        self._open.append(0.0)
        self._opened.append((name, start))
        try:
            yield
        finally:
            self._opened.pop()
            spent = time.perf_counter() - start
            self.phases[name] += spent - self._open.pop()
            if self._open:
                self._open[-1] += spent

    def so_far(self) -> dict[str, float]:
        """Time by phase up to now, the open phases' time so far included (what a heartbeat records
        in the middle of a long phase)."""
        now, found = time.perf_counter(), dict(self.phases)
        inner = 0.0  # time so far of the open phase nested inside this one
        for (name, start), nested in reversed(list(zip(self._opened, self._open))):
            found[name] += now - start - nested - inner  # nested: its finished inner phases
            inner = now - start
        return found

    def elapsed(self) -> float:
        return time.perf_counter() - self.began


def clock_of(state) -> Clock | None:
    return getattr(getattr(state, "progress", None), "clock", None)


@contextlib.contextmanager
def phase(state, name: str):
    """`with phase(state, "saving"):` counts the block's time to that phase (nothing without a
    clock), and names the phase a signal would stop (tunelab.signals)."""
    from tunelab.signals import in_phase

    clock = clock_of(state)
    with in_phase(name), (clock.phase(name) if clock is not None else contextlib.nullcontext()):
        yield


class Progress:
    def __init__(self, total: int, start: int, mode: str = "auto", enabled: bool = True):
        self.total, self.step = total, start
        self.enabled = enabled and mode != "off"
        self.use_bar = self.enabled and (mode == "bar" or (mode == "auto" and sys.stderr.isatty()))
        self.bar = None  # made at the first step, so that its rate and ETA count training steps only
        self.start = start
        self.every = max(1, total // 20)
        self.clock = Clock()

    def eta(self, step: int) -> float:
        """Seconds the remaining training steps take at this start's pace so far."""
        done = step - self.start
        return self.clock.phases["training"] / done * (self.total - step) if done > 0 else 0.0

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        self.step = step
        if not self.enabled:
            return
        if self.use_bar:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, initial=self.start, desc="training steps", unit="step",
                                dynamic_ncols=True)
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:.0f}", refresh=False)
            return
        if step % self.every == 0 or step == self.total:
            print(f"step {step}/{self.total}  loss {loss:.4f}  {tokens_per_s:.0f} tok/s  "
                  f"eta {self.eta(step):.0f}s (training steps only)", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
