"""The protocol every scoring unit follows, so that scoring is one loop over units.

A unit (units.py, loglikelihood.py) is one metric family with its settings, like sacrebleu's
metric classes. It gives:
- `statistics(records)`: per-record statistics (one row per record);
- `corpus_fn(key)`: the corpus score of one reported key from statistics summed over records,
  (rows, k) -> (rows,), so a CI or a paired test resamples records and recomputes the score;
- `signature(nrefs)`: its name and every setting that changes the numbers (None if it has none);
- `higher_is_better(key)` and `scale(key)`: read from the one vocabulary (vocabulary.py);
- `score(records, bootstrap)`: the `tunelab score` JSON entries, per-record entries and what a
  paired comparison tests (`Scored`); `headline(key, scored)`: the one number results.json shows
  for a key, `example_fields(scored, i)`: record i's scores as the per-example file stores them.
Means over records (ROUGE, exact match, token F1, accuracy) and corpus statistics (BLEU, chrF,
macro-F1, perplexity) differ only in `Paired.corpus`: None for a mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np

from tunelab.metrics import vocabulary


@dataclass
class Records:
    """Checked prediction records (score.validate_records): what every text unit reads."""

    predictions: list[str]
    references: list[list[str | None]]  # None: a missing reference (BLEU/chrF count it as sacrebleu)
    gold: list[str] | None = None
    where: Callable[[int], str] = field(default=lambda i: f"<records>:{i + 1}")

    @property
    def n(self) -> int:
        return len(self.predictions)

    @cached_property
    def present(self) -> list[list[str]]:
        """References without the missing ones (ROUGE, exact match and token F1 ignore those)."""
        return [[r for r in refs if r is not None] for refs in self.references]

    @property
    def nrefs(self) -> int | str:
        """References per record for a signature: a number, or "var" when it varies."""
        seen = {len(refs) for refs in self.present}
        return next(iter(seen)) if len(seen) == 1 else "var"


@dataclass(frozen=True)
class Bootstrap:
    """Percentile bootstrap settings; every CI of one call uses the same resampled records."""

    n_resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95

    @property
    def on(self) -> bool:
        return bool(self.n_resamples) and self.n_resamples > 0

    def mean_ci(self, values: np.ndarray) -> list[float] | None:
        from tunelab.metrics import stats as S

        return list(S.bootstrap_ci(values, self.n_resamples, self.confidence, self.seed)) if self.on else None

    def statistic_ci(self, statistics: np.ndarray, corpus_fn) -> list[float] | None:
        from tunelab.metrics import stats as S

        if not self.on:
            return None
        samples = S.bootstrap_statistic(statistics, corpus_fn, self.n_resamples, self.seed)
        return list(S.percentile_interval(samples, self.confidence))

    def describe(self) -> dict:
        return {"n_resamples": self.n_resamples, "seed": self.seed, "confidence": self.confidence,
                "method": "percentile, records resampled with replacement"}


@dataclass
class Paired:
    """What a paired comparison tests for one key: per-record values whose mean is the score
    (corpus None), or per-record statistics and the corpus function of their sums."""

    values: np.ndarray
    corpus: Callable[[np.ndarray], np.ndarray] | None = None

    def score(self) -> float:
        if self.corpus is None:
            return float(self.values.mean())
        return float(self.corpus(self.values.sum(axis=0)[None])[0])


@dataclass
class Scored:
    """One unit's result: `tunelab score` JSON entries, one entry dict per record, paired keys."""

    corpus: dict
    per_record: list[dict]
    paired: dict[str, Paired]


class Unit:
    """Base of every scoring unit (see the module docstring for the protocol)."""

    name = ""

    def keys(self) -> tuple[str, ...]:
        """The keys this unit reports, as the vocabulary names them."""
        return tuple(k for k, entry in vocabulary.KEYS.items() if entry.unit == self.name)

    def higher_is_better(self, key: str) -> bool:
        return vocabulary.key(key).higher_is_better

    def scale(self, key: str) -> str:
        return vocabulary.key(key).scale

    def signature(self, nrefs) -> str | None:
        return None

    def statistics(self, records) -> np.ndarray:
        raise NotImplementedError

    def corpus_fn(self, key: str):
        raise NotImplementedError

    def score(self, records: Records, bootstrap: Bootstrap) -> Scored:
        raise NotImplementedError

    def headline(self, key: str, scored: Scored) -> tuple[float, list | None, dict]:
        """(value, CI or None, extra fields) of `key` in results.json."""
        raise NotImplementedError

    def example_fields(self, scored: Scored, i: int) -> dict:
        """Record i's scores as <task>.examples.jsonl stores them."""
        raise NotImplementedError


def mean_entry(values: np.ndarray, bootstrap: Bootstrap) -> dict:
    """A mean over records with its CI, as `tunelab score` writes it."""
    entry = {"mean": float(values.mean())}
    ci = bootstrap.mean_ci(values)
    if ci is not None:
        entry["ci"] = ci
    return entry
