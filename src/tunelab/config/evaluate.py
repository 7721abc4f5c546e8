"""`eval:` and `retention:` sections: which tasks to score, how, and forgetting checks."""

from __future__ import annotations

from tunelab.config.base import StrictModel


class EvalConfig(StrictModel):
    tasks: list[str] = []
