"""Mixing the training examples of several tasks.

Rates (n_i = training examples of task i, K = cap, T = temperature):
  concat        every example once per epoch:          r_i = n_i / sum_j n_j
  proportional  examples-proportional, T5/FLAN:        r_i = min(n_i, K) / sum_j min(n_j, K)
  temperature   T5 temperature-scaled mixing:          r_i = min(n_i, K)^(1/T) / sum_j min(n_j, K)^(1/T)
  equal         r_i = 1 / (number of non-empty tasks)
  weights       r_i = w_i / sum_j w_j
An epoch holds N examples (default sum_j min(n_j, K)); task i gets round(r_i * N) of them
(largest remainder), taken from an endless stream of seeded permutations of its examples, so
a down-sampled task shows new examples in the next epoch and repeats only after all were seen.
The order is fixed by (seed, epoch) through SHA-256 keys: the same on every process and machine.
"""

from __future__ import annotations

from tunelab.data.splits import largest_remainder, stable_key, stable_permutation

STRATEGIES = ("concat", "proportional", "temperature", "equal", "weights")


def mixture_rates(sizes: dict[str, int], strategy: str = "concat", cap: int | None = None,
                  temperature: float = 1.0, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Sampling rate of each task (summing to 1; tasks with no training examples get 0)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown mixture strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if not sizes or sum(sizes.values()) == 0:
        return {name: 0.0 for name in sizes}
    capped = {name: (min(n, cap) if cap is not None else n) for name, n in sizes.items()}
    if strategy == "concat":
        raw = {name: float(n) for name, n in sizes.items()}
    elif strategy == "proportional":
        raw = {name: float(m) for name, m in capped.items()}
    elif strategy == "temperature":
        raw = {name: (float(m) ** (1.0 / temperature) if m > 0 else 0.0) for name, m in capped.items()}
    elif strategy == "equal":
        raw = {name: (1.0 if n > 0 else 0.0) for name, n in sizes.items()}
    else:
        weights = weights or {}
        missing = [name for name in sizes if name not in weights]
        if missing:
            raise ValueError(f"mixture strategy 'weights' needs a weight for task(s): {', '.join(missing)}")
        raw = {name: (float(weights[name]) if sizes[name] > 0 else 0.0) for name in sizes}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError("mixture weights of the non-empty tasks sum to zero")
    return {name: value / total for name, value in raw.items()}


def epoch_counts(sizes: dict[str, int], rates: dict[str, float], strategy: str = "concat",
                 cap: int | None = None, epoch_size: int | None = None) -> dict[str, int]:
    """Examples drawn from each task in one epoch."""
    if strategy == "concat" and epoch_size is None:
        return dict(sizes)
    if epoch_size is None:
        epoch_size = sum(min(n, cap) if cap is not None else n for n in sizes.values())
    if epoch_size == 0 or sum(rates.values()) == 0:
        return {name: 0 for name in sizes}
    return largest_remainder(epoch_size, rates)


def task_stream(n: int, start: int, count: int, seed: int, task: str) -> list[int]:
    """Positions start..start+count-1 of the endless stream perm_0 + perm_1 + ... of range(n)."""
    out, cache = [], {}
    for pos in range(start, start + count):
        cycle, offset = divmod(pos, n)
        if cycle not in cache:
            cache[cycle] = stable_permutation(n, seed, "mixture", task, cycle)
        out.append(cache[cycle][offset])
    return out


def epoch_order(sizes: dict[str, int], counts: dict[str, int], epoch: int, seed: int) -> list[tuple[str, int]]:
    """(task, example index) pairs of one epoch, interleaved in a seeded order."""
    drawn = []
    for task in sorted(sizes):
        n, c = sizes[task], counts.get(task, 0)
        if n == 0 or c == 0:
            continue
        for j, index in enumerate(task_stream(n, epoch * c, c, seed, task)):
            drawn.append((stable_key(seed, "order", epoch, task, j), task, index))
    drawn.sort()
    return [(task, index) for _, task, index in drawn]
