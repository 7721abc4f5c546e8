"""Replay buffer: a deterministic sample of earlier tasks' training examples for a later stage.

Replaying a little old data is the simplest remedy for catastrophic forgetting (Robins 1995;
"experience replay" in Rolnick et al. 2019). The sample depends only on the seed, the task name
and the pool size, so it is identical on every process and machine and across reruns.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Sequence, TypeVar

T = TypeVar("T")


def replay_count(pool_size: int, fraction: float | None = None, count: int | None = None) -> int:
    """How many examples to replay from a pool: exact `count` (capped at the pool) or
    round(fraction * pool) with at least one example when the fraction is positive."""
    if (fraction is None) == (count is None):
        raise ValueError("give exactly one of fraction or count")
    if count is not None:
        if count < 1:
            raise ValueError(f"replay count must be >= 1, got {count}")
        return min(count, pool_size)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"replay fraction must be in (0, 1], got {fraction}")
    if pool_size == 0:
        return 0
    return max(1, min(pool_size, math.floor(fraction * pool_size + 0.5)))


def _task_rng(seed: int, task: str) -> random.Random:
    # Derive a per-task stream from (seed, task) with a stable hash (Python's hash() is salted).
    digest = hashlib.sha256(f"{seed}:{task}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def sample_replay(
    pools: dict[str, Sequence[T]],
    fraction: float | None = None,
    count: int | None = None,
    seed: int = 0,
) -> dict[str, list[T]]:
    """Per earlier task, a sample without replacement of its training examples, kept in the
    pool's original order (so the later shuffle of the stage is the only ordering)."""
    out: dict[str, list[T]] = {}
    for task in sorted(pools):
        pool = pools[task]
        k = replay_count(len(pool), fraction, count)
        picked = sorted(_task_rng(seed, task).sample(range(len(pool)), k))
        out[task] = [pool[i] for i in picked]
    return out
