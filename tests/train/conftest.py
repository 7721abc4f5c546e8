"""Fixtures for the training tests (helpers live in train_helpers.py)."""

from __future__ import annotations

import pytest

@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Two cores shared by several developers: more threads than free cores makes torch spin
    # (a 2-layer model then takes seconds per step instead of milliseconds).
    import torch

    torch.set_num_threads(1)
