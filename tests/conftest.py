"""Shared fixtures: offline environment, the embedded SmolLM2 and a tiny random Llama.

The tiny model (hidden 64, 2 layers, SmolLM2's tokenizer and chat template) builds in well
under a second: unit tests use it. Tests marked `slow` use the real SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Offline, with every cache inside the project: the same on a laptop, in CI and in the demo.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", str(ROOT / ".cache" / "hf"))
os.environ.setdefault("TUNELAB_HOME", str(ROOT / ".cache" / "tunelab"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Test processes (pytest-xdist, `make test`) share the cores: each gets its share of OpenMP threads,
# and waiting threads do not spin long (set before anything imports torch; the CLI does the same
# for itself, config/env.py). More threads than free cores makes torch's threads spin against each
# other: the one long SmolLM2 test took 537 s instead of 172 s next to a second test process.
TEST_PROCESSES = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // TEST_PROCESSES)))
if not os.environ.get("OMP_WAIT_POLICY"):
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the checkout (../shared/data); tests read them in place. In CI
    their absence fails the test: a skip there would hide a broken setup."""
    if not SHARED_DATA.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} not present (CI has it beside the checkout)")
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The embedded SmolLM2-135M-Instruct, converted once to safetensors under TUNELAB_HOME."""
    from tunelab.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def build_tiny_llama(folder: Path, tokenizer, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> str:
    """A random 2-layer Llama with SmolLM2's tokenizer, saved as a model folder."""
    return str(build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer))
