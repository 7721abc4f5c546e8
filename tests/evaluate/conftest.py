"""Evaluation fixtures: a tiny Llama with peaked logits (so greedy outputs differ per prompt), a
LoRA adapter on it, and a fake run folder whose final/ is that adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)  # shared 2-core machine: extra threads only spin


@pytest.fixture(scope="session")
def peaked_model_dir(tmp_path_factory, tokenizer) -> str:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, initializer_range=0.3, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    folder = tmp_path_factory.mktemp("peaked-llama")
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def fake_run(tmp_path_factory, peaked_model_dir) -> Path:
    """A run folder as the training engine writes it: config.resolved.yaml, summary.json, final/ (LoRA)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("runs") / "tiny-lora"
    run.mkdir()
    model = AutoModelForCausalLM.from_pretrained(peaked_model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(2)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained-looking adapter: it changes the outputs
    peft.save_pretrained(run / "final", safe_serialization=True)
    (run / "config.resolved.yaml").write_text(yaml.safe_dump({
        "name": "tiny-lora", "model": {"name": peaked_model_dir},
        "data": {"tasks": [{"name": "sst2", "kind": "classification",
                            "source": str(SHARED_DATA / "sst2" / "sst2_glue_validation.tsv"),
                            "fields": {"text": "sentence", "label": "label"},
                            "labels": {0: "negative", 1: "positive"}}]}}))
    (run / "summary.json").write_text(json.dumps({"method": "lora", "wall_s": 12.0, "train_tokens": 5000,
                                                  "trainable_params": 4096, "total_params": 3_000_000,
                                                  "peak_rss_mb": 900.0, "steps": 10}))
    return run
