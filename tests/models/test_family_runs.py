"""Whole training runs on every family: exact resume and a merged export that plain transformers loads.

Per family, LoRA (dropout on, so that resume must restore the RNG; off on mixture-of-experts models,
whose fused expert weights take none) with a constant schedule: four steps straight, and two steps
then `resume=True` with train.max_steps raised to four, must end with bit-identical adapters. Causal
families train packed (the setup's packing probe runs; a family it refuses is shown refused, then
trains unpacked). The straight run's merged export must load in plain transformers and give the
run's own logits.
"""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from families import FAMILIES, MOE, PACKING_REFUSED, SEQ2SEQ
from tunelab.config import ConfigError, load_config
from tunelab.train import train

WORDS = {0: "bad awful dull weak".split(), 1: "good great lovely fine".split()}


def records(n: int = 16) -> list[dict]:
    rng = random.Random(0)
    return [{"text": " ".join(rng.choice(WORDS[label]) for _ in range(rng.randint(2, 6))), "label": label}
            for label in (rng.randint(0, 1) for _ in range(n))]


def run_config(tmp_path, model_dir: str, name: str, max_steps: int, packing: bool, dropout: float = 0.1) -> dict:
    return {
        "name": name, "seed": 1, "output_dir": str(tmp_path / "runs"), "model": {"name": model_dir},
        "data": {"tasks": [{"name": "toy", "kind": "classification", "source": {"records": records()},
                            "fields": {"text": "text", "label": "label"}, "labels": {0: "negative", 1: "positive"}}]},
        "train": {"method": "lora", "lora": {"r": 4, "dropout": dropout}, "lr": 1e-2, "scheduler": "constant",
                  "max_steps": max_steps, "batch_size": 4, "checkpoint_every": 2, "precision": "fp32",
                  "progress": "off", "packing": packing},
    }


@pytest.mark.parametrize("family", list(FAMILIES))
def test_resume_is_bit_identical_and_merged_export_loads_in_transformers(tmp_path, tokenizer, family_dir,
                                                                         family):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from tunelab.export import export_run, load_run_model

    model_dir = family_dir(family)

    def config(name, steps, packing=family not in SEQ2SEQ + tuple(PACKING_REFUSED)):
        return load_config(data=run_config(tmp_path, model_dir, name, steps, packing, 0.0 if family in MOE else 0.1))

    if family in PACKING_REFUSED:  # the setup's probe refuses it before the run folder exists
        with pytest.raises(ConfigError, match=f"train.packing: {family} models"):
            train(config("packed", 4, packing=True))
        assert not (tmp_path / "runs" / "packed").exists()
    straight = train(config("straight", 4))
    train(config("resumed", 2))
    resumed = train(config("resumed", 4), resume=True)
    a = load_file(str(straight / "final" / "adapter_model.safetensors"))
    b = load_file(str(resumed / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    merged = export_run(straight, merge=True)
    auto = AutoModelForSeq2SeqLM if family in SEQ2SEQ else AutoModelForCausalLM
    plain = auto.from_pretrained(merged).eval()
    ours, _, _ = load_run_model(straight)
    ids = torch.tensor([tokenizer("Review: good lovely film", add_special_tokens=False)["input_ids"]])
    extra = {"decoder_input_ids": ids[:, :4]} if family in SEQ2SEQ else {}
    with torch.no_grad():
        got, want = plain(input_ids=ids, **extra).logits, ours(input_ids=ids, **extra).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
