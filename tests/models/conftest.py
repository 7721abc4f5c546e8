"""Fixtures for the model tests: the tiny random model of each family (families.py), built once."""

from __future__ import annotations

import pytest

from families import build_family


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Two cores shared with other work: more torch threads than free cores only spin.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory, tokenizer):
    """family -> folder of its tiny random model, each built on first use and shared by every test."""
    built: dict[str, str] = {}

    def get(family: str) -> str:
        if family not in built:
            built[family] = str(build_family(family, tmp_path_factory.mktemp(family), tokenizer))
        return built[family]

    return get


@pytest.fixture(scope="session")
def family_model(family_dir):
    """family -> (a fresh copy of its model as tunelab.models.load_model loads it, the tokenizer).

    Loaded once per family: a tokenizer load (~0.8 s, SmolLM2's tokenizer.json) costs more than any
    check on these models; each test gets its own deep copy of the weights to attach a method to."""
    import copy

    from tunelab.models import load_model

    loaded: dict[str, tuple] = {}

    def get(family: str):
        if family not in loaded:
            loaded[family] = load_model(family_dir(family))
        model, tokenizer = loaded[family]
        return copy.deepcopy(model), tokenizer

    return get
