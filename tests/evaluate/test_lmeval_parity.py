"""tunelab's MMLU prompt (recipe style=lm_eval) against lm-evaluation-harness itself, in-process:
the same prompts byte for byte, the same letter on every question, log-likelihoods within 1e-4
(benchmarks/lmeval_mmlu_parity.py runs all six subjects)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from lmeval_mmlu_parity import run_parity  # noqa: E402


@pytest.mark.slow
def test_mmlu_lm_eval_style_matches_lm_eval_on_abstract_algebra(shared_data, smollm2_dir):
    if importlib.util.find_spec("lm_eval") is None:
        message = 'lm_eval is not installed: pip install "lm_eval[hf]>=0.4,<0.5" (in the test extra)'
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)  # CI must run the comparison, not skip it
        pytest.skip(message)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # two full model passes over 100 questions: ~2 minutes on 2 cores
    try:
        report = run_parity(["abstract_algebra"], shared_data / "mmlu_subset", batch_size=16)
    finally:
        torch.set_num_threads(threads)
    r = report["subjects"]["abstract_algebra"]
    assert r["questions"] == 100
    assert r["identical_prompts"] == r["identical_predictions"] == r["logprobs_within_tol"] == 100, \
        report["differences"][:5]
    assert r["max_abs_diff"] <= 1e-4
