"""Tiny random models of every family tunelab is tested on, built offline from transformers configs.

Each family is a config class name plus keyword arguments; every model has SmolLM2's tokenizer and
vocabulary, hidden size 32 and 2 layers (1 per stack for encoder-decoders), so building one takes
well under a second. Family-specific settings that change the numbers are set to values a real
checkpoint has (Granite's multipliers, Gemma-2's soft-capping), so that a code path that ignores
them gives a different number here too. Imported as a plain module by tests/models/test_families.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DECODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "max_position_embeddings": 256}
GEMMA = {**DECODER, "head_dim": 8, "query_pre_attn_scalar": 8}

# family -> (config class, model class, config kwargs)
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", DECODER),
    "mistral": ("MistralConfig", "MistralForCausalLM", {**DECODER, "sliding_window": 4096}),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", {**DECODER, "num_local_experts": 4, "num_experts_per_tok": 2}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", DECODER),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {**DECODER, "head_dim": 8}),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  {**DECODER, "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", GEMMA),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               {**GEMMA, "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0, "sliding_window": 4}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {**GEMMA, "sliding_window": 4,
                                                         "layer_types": ["sliding_attention", "full_attention"]}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", DECODER),
    # IBM Granite 3.x values: the logits are divided by logits_scaling.
    "granite": ("GraniteConfig", "GraniteForCausalLM",
                {**DECODER, "embedding_multiplier": 12.0, "logits_scaling": 8.0, "residual_multiplier": 0.22,
                 "attention_multiplier": 0.0156}),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", DECODER),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256}),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                 {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "max_position_embeddings": 256, "rotary_pct": 0.25}),
    "falcon": ("FalconConfig", "FalconForCausalLM",
               {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256}),
    "cohere": ("CohereConfig", "CohereForCausalLM", {**DECODER, "logit_scale": 0.0625}),  # logits scaled
    # OPT builds its causal mask without the position ids: packed examples see each other (packing refused).
    "opt": ("OPTConfig", "OPTForCausalLM", {"hidden_size": 32, "ffn_dim": 64, "num_hidden_layers": 2,
                                            "num_attention_heads": 4, "max_position_embeddings": 256,
                                            "word_embed_proj_dim": 32}),
    "t5": ("T5Config", "T5ForConditionalGeneration",
           {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_layers": 1, "num_heads": 4}),
    "bart": ("BartConfig", "BartForConditionalGeneration",
             {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 4,
              "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
              "max_position_embeddings": 256}),
}
SEQ2SEQ = ("t5", "bart")
CAUSAL = tuple(f for f in FAMILIES if f not in SEQ2SEQ)
MOE = ("mixtral", "qwen3_moe")

# What tunelab's probes and checks decide for these models (the table in docs/training.md):
# families whose logits are not head(body(x)), kept on the model's own forward by the probe;
PLAIN_LOSS = {"gemma2", "granite", "cohere"}
# families whose packed examples would see each other (the packing probe refuses them);
PACKING_REFUSED = {"opt"}
# (family, method) refused, with what the message must say.
REFUSED = {
    # peft's IA3 defaults name w2 (gone from transformers 5's fused experts) or nothing; no down_proj either.
    ("mixtral", "ia3"): "no default modules fit mixtral", ("qwen3_moe", "ia3"): "no default modules fit qwen3_moe",
    ("phi3", "ia3"): "no default modules fit phi3",  # fused qkv_proj: the user chooses
    # peft's all-linear adapts the fused expert weights, which DoRA cannot.
    ("mixtral", "dora"): "mixtral models.*fused expert", ("qwen3_moe", "dora"): "qwen3_moe models.*fused expert",
}


def need(condition: bool, why: str) -> None:
    """Skip a test whose requirement is missing, except in CI, where a missing requirement fails."""
    if not condition:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"required in CI: {why}")
        pytest.skip(why)


def special_ids(family: str, tokenizer) -> dict:
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    if family in SEQ2SEQ:
        # T5 starts the decoder with the pad token; BART with EOS (as their real checkpoints do).
        ids["decoder_start_token_id"] = tokenizer.pad_token_id if family == "t5" else tokenizer.eos_token_id
        # A plain greedy decoder: BART's default forces EOS at max_length, which greedy decoding does not.
        ids["forced_eos_token_id"] = None
    return ids


def build_family(family: str, folder: Path, tokenizer, seed: int = 0) -> Path:
    """Save a tiny random model of `family` with SmolLM2's tokenizer in `folder`."""
    import torch
    import transformers

    config_name, model_name, kwargs = FAMILIES[family]
    need(hasattr(transformers, config_name) and hasattr(transformers, model_name),
         f"transformers {transformers.__version__} has no {model_name}")
    config = getattr(transformers, config_name)(vocab_size=len(tokenizer), tie_word_embeddings=True,
                                                **special_ids(family, tokenizer), **kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
