"""llama.cpp's converter on the families the GGUF export promises (Llama/SmolLM2 is covered by
test_export_gguf.py): tiny random Mistral, Qwen3 and Gemma 3 models with SmolLM2's BPE tokenizer,
converted to f16 and read back by transformers with the same weights (bit-exact after f16
rounding) and logits; Gemma 2, whose converter reads a SentencePiece `tokenizer.model`, exported
from a LoRA run whose base folder has one (transformers 5 does not save that file, so the export
copies it from the base model). A Qwen2 folder needs a real Qwen2 tokenizer, which no package
ships offline: with SmolLM2's the converter refuses, and the test checks that it says why.
"""

from __future__ import annotations

import importlib.util
import io
import random
from pathlib import Path

import pytest
import torch

from test_export_gguf import assert_weights_within_rounding, load_gguf, relative_logit_error

FAMILIES_PY = Path(__file__).resolve().parents[1] / "models" / "families.py"
# What transformers' GGUF loader does not read back, set as real checkpoints have it (the loader
# assumes these values): Qwen3's head_dim 128; Gemma 2/3 scale attention by query_pre_attn_scalar
# = head_dim = 256 (Gemma 2 2B/9B, Gemma 3 1B/4B), and Gemma 3's layers 1-5 of each 6 use
# sliding-window attention.
GGUF_AS_REAL = {"qwen3": {"head_dim": 128},
                "gemma2": {"head_dim": 256, "query_pre_attn_scalar": 256},
                "gemma3": {"head_dim": 256, "query_pre_attn_scalar": 256,
                           "layer_types": ["sliding_attention", "sliding_attention"]}}


def build_family(family: str, folder: Path, tokenizer) -> Path:
    """The tiny random model of `family` that tests/models uses (its families.py), with GGUF_AS_REAL."""
    import transformers

    spec = importlib.util.spec_from_file_location("tunelab_test_families", FAMILIES_PY)
    families = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(families)
    config_name, model_name, kwargs = families.FAMILIES[family]
    config = getattr(transformers, config_name)(vocab_size=len(tokenizer), tie_word_embeddings=True,
                                                **families.special_ids(family, tokenizer),
                                                **{**kwargs, **GGUF_AS_REAL.get(family, {})})
    torch.manual_seed(0)
    getattr(transformers, model_name)(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("family, arch", [("mistral", "llama"), ("qwen3", "qwen3"), ("gemma3", "gemma3_text")])
def test_family_converts_and_loads_back(family, arch, tmp_path, tokenizer):
    from transformers import AutoModelForCausalLM

    from tunelab.export.gguf import convert_folder

    folder = build_family(family, tmp_path / family, tokenizer)
    path = convert_folder(folder, tmp_path / f"{family}.gguf", "f16")
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model = load_gguf(path)  # transformers' model type is the file's general.architecture
    assert model.config.model_type == arch and model.config.vocab_size == len(tokenizer)
    assert_weights_within_rounding(model, reference, "f16")
    assert relative_logit_error(model, reference, torch.tensor([[1, 200, 300, 400, 500, 600]])) <= 0.01


def test_a_tokenizer_the_converter_does_not_know_is_refused_clearly(tmp_path, tokenizer):
    """transformers 5 loads a Qwen2 model's tokenizer with Qwen2's own pre-tokenizer, so SmolLM2's
    vocabulary in a Qwen2 folder splits text like no released model: the converter refuses it (by
    its hash of a reference text) rather than write a file llama.cpp would tokenize differently."""
    from tunelab.config.base import UserError
    from tunelab.export.gguf import convert_folder

    folder = build_family("qwen2", tmp_path / "qwen2", tokenizer)
    with pytest.raises(UserError, match="could not convert .*BPE pre-tokenizer was not recognized"):
        convert_folder(folder, tmp_path / "qwen2.gguf", "f16")
    assert not list(tmp_path.glob("*.gguf*"))


def sentencepiece_tokenizer(folder: Path):
    """A 320-piece SentencePiece model trained on the toy words, as a Gemma tokenizer folder."""
    import sentencepiece
    from transformers import AutoTokenizer

    from train_helpers import WORDS_NEG, WORDS_POS

    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS_POS + WORDS_NEG) for _ in range(8)) for _ in range(400)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=320,
                                             model_type="bpe", byte_fallback=True, add_dummy_prefix=False,
                                             pad_id=0, eos_id=1, bos_id=2, unk_id=3, minloglevel=2)
    folder.mkdir(parents=True)
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "GemmaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", '
        '"unk_token": "<unk>"}')
    return AutoTokenizer.from_pretrained(folder)


def test_gemma2_export_takes_the_sentencepiece_model_from_the_base(tmp_path):
    from tunelab.config import load_config
    from tunelab.train import train
    from tunelab.export import export_run, load_run_model
    from tunelab.export.gguf import describe
    from train_helpers import toy_config

    spm = sentencepiece_tokenizer(tmp_path / "spm")
    base = build_family("gemma2", tmp_path / "gemma2", spm)
    (base / "tokenizer.model").write_bytes((tmp_path / "spm" / "tokenizer.model").read_bytes())
    run = train(load_config(data=toy_config(tmp_path, str(base), name="g2", lr=5e-2, max_steps=2)))
    assert not (run / "final" / "tokenizer.model").exists()  # what makes the copy necessary
    out = export_run(run, gguf="f16")
    info = describe(out / "g2-F16.gguf")
    assert info["architecture"] == "gemma2" and info["vocab_size"] == len(spm)
    model, _, _ = load_run_model(run)
    merged = model.merge_and_unload()
    gguf_model = load_gguf(out / "g2-F16.gguf")
    assert_weights_within_rounding(gguf_model, merged, "f16")
    assert relative_logit_error(gguf_model, merged, torch.tensor([[2, 40, 50, 60, 70]])) <= 0.01
