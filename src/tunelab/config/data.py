"""`data:` section: sources, task templates, tokenisation policy, splits and mixtures.

Owned by the data pipeline (tunelab.data); this is the minimal starting shape.
"""

from __future__ import annotations

from tunelab.config.base import StrictModel


class DataConfig(StrictModel):
    tasks: list[dict] = []
