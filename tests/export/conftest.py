"""Fixtures for the export tests: the training tests' helpers (tests/train/train_helpers.py) make
the runs they export, and torch runs one thread (the 2 cores are shared with other work)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)
