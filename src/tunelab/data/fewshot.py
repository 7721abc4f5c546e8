"""Few-shot examples: which solved training examples go before a question.

`few_shot_sampler: random` (the default) draws by SHA-256 of (seed, task, split, index, attempt),
so every process and machine picks the same shots. `first` takes the first k in source order:
lm-eval's `first_n`, which MMLU uses for its five canonical dev questions. `few_shot_group: FIELD`
draws only from training records with the same value of that record field (MMLU: the question's
own subject). An example is never one of its own shots.
"""

from __future__ import annotations

from tunelab.data.errors import DataError
from tunelab.data.splits import stable_key


def group_value(record, field: str) -> str:
    if record.data.get(field) is None:
        known = ", ".join(sorted(map(str, record.data))) or "none"
        raise DataError(f"{record.where}: few_shot_group field '{field}' is missing (record has: {known})")
    return str(record.data[field])


class ShotPicker:
    """Shots for every example of a task, from its training split `pool` of (record, parts)."""

    def __init__(self, task, pool: list, order: dict[int, int], seed: int):
        # order: id(record) -> position in its source list, for the `first` sampler
        self.task, self.pool, self.seed = task, pool, seed
        self.groups: dict[str, list[int]] | None = None
        if task.few_shot_group:
            self.groups = {}
            for j, (record, _) in enumerate(pool):
                self.groups.setdefault(group_value(record, task.few_shot_group), []).append(j)
        if task.few_shot_sampler == "first":
            by_source = sorted(range(len(pool)), key=lambda j: order[id(pool[j][0])])
            rank = {j: n for n, j in enumerate(by_source)}
            self.first = by_source
            for members in (self.groups or {}).values():
                members.sort(key=rank.__getitem__)

    def candidates(self, record) -> list[int] | range:
        if self.groups is None:
            return self.first if self.task.few_shot_sampler == "first" else range(len(self.pool))
        value = group_value(record, self.task.few_shot_group)
        if value not in self.groups:
            raise DataError(f"{record.where}: task '{self.task.name}': no training examples with "
                            f"{self.task.few_shot_group} = {value!r} to draw few-shot examples from")
        return self.groups[value]

    def shots(self, split: str, i: int, record) -> list[tuple[str, str]]:
        """(user message, answer) of each shot for example `i` of `split`."""
        candidates = self.candidates(record)
        if self.task.few_shot_sampler == "first":
            chosen = [j for j in candidates if self.pool[j][0] is not record][: self.task.few_shot]
        else:
            chosen = self._drawn(candidates, split, i, record)
        return [(self.pool[j][1].user, self.pool[j][1].target) for j in chosen]

    def _drawn(self, candidates, split: str, i: int, record) -> list[int]:
        k = self.task.few_shot
        chosen, attempt = [], 0
        # a training example is in its own pool (and group): one fewer to draw from
        limit = min(k, len(candidates) - (1 if split == "train" else 0))
        # Hash-drawn indices: stable across processes; never the example itself.
        while len(chosen) < limit and attempt < 50 * k + len(candidates):
            digest = stable_key(self.seed, self.task.name, "few-shot", split, i, attempt)
            j = candidates[int.from_bytes(digest[:8], "big") % len(candidates)]
            attempt += 1
            if self.pool[j][0] is record or j in chosen:
                continue
            chosen.append(j)
        return chosen
