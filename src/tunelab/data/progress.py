"""Progress of a long data preparation: one tqdm bar per stage (reading, templating, leak check,
rendering and tokenizing: data/stream.py) with rows/s and an ETA, on a terminal only.

The quiet-terminal rules of train/progress.py and cli/quiet.py hold: nothing is written when
stderr is not a terminal (logs, CI, pipes), and a bar appears only once a stage has run for
`DELAY_S`, so small datasets prepare as silently as before.
"""

from __future__ import annotations

import sys

DELAY_S = 2.0


class _Off:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class DataProgress:
    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def stage(self, name: str, total: int | None):
        """A bar for one stage of `total` rows (None: unknown); `.update(n)` and `.close()`."""
        if not self.enabled:
            return _Off()
        from tqdm import tqdm

        return tqdm(total=total, desc=name, unit="rows", unit_scale=True, delay=DELAY_S, dynamic_ncols=True,
                    leave=False, file=sys.stderr)
