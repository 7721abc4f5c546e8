"""Progress display: a tqdm bar on a terminal, plain log lines otherwise (CI, files)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, start: int, mode: str = "auto", enabled: bool = True):
        self.total, self.step = total, start
        self.enabled = enabled and mode != "off"
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.bar = None
        self.t0, self.start = time.perf_counter(), start
        self.every = max(1, total // 20)
        if self.enabled and use_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        self.step = step
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:.0f}", refresh=False)
            return
        if step % self.every == 0 or step == self.total:
            done = step - self.start
            elapsed = time.perf_counter() - self.t0
            eta = elapsed / done * (self.total - step) if done else 0.0
            print(f"step {step}/{self.total}  loss {loss:.4f}  {tokens_per_s:.0f} tok/s  "
                  f"eta {eta:.0f}s", file=sys.stderr, flush=True)

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
