"""`train:` section: method, optimizer, schedule, batching, validation, checkpoints."""

from __future__ import annotations

from tunelab.config.base import StrictModel


class TrainConfig(StrictModel):
    method: str = "lora"
