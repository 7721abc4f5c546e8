"""GGUF export: llama.cpp's converter writes the file, transformers' own GGUF loader reads it back.

Two checks per file, both against the merged float32 model of the run:
- weights: every tensor transformers de-quantizes from the GGUF equals the merged weight rounded
  to the file's type. f16 / bf16: bit-exact (`tensor.to(f16).float()`); 1-D tensors (norms) are
  kept float32 by the converter, so exact. q8_0: blocks of 32 values share one f16 scale
  d = max|x| / 127, so each value is off by at most d/2 plus the scale's own f16 rounding
  (127 * d * 2**-11): |error| <= max|block| * (1/254 + 2**-11).
- logits: on a fixed prompt, max |difference| relative to max |logit|: f16 <= 1%, bf16 <= 5%,
  q8_0 <= 5% (the random tiny model's logits are small and flat; the real SmolLM2 test is tighter).
Plus the tokenizer inside the file: same vocabulary, same chat template, same token ids.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from tunelab.config import load_config
from tunelab.train import train
from train_helpers import subprocess_env, toy_config

PROMPT = [{"role": "user", "content": "Is this review positive? 'lovely, charming, superb'"}]
LOGIT_TOLERANCE = {"f16": 0.01, "bf16": 0.05, "q8_0": 0.05}
ROUNDED = {"f16": torch.float16, "bf16": torch.bfloat16}


def assert_weights_within_rounding(gguf_model, merged, gguf_type: str) -> None:
    got = gguf_model.state_dict()
    for name, w in merged.state_dict().items():
        g = got[name].float()
        if w.dim() < 2:
            assert torch.allclose(g, w, rtol=0, atol=1e-6), name  # norms stay float32 (Gemma's 1 + w: 1e-7)
        elif gguf_type in ROUNDED:
            assert torch.equal(g, w.to(ROUNDED[gguf_type]).float()), name
        else:
            blocks = w.reshape(-1, 32)
            bound = blocks.abs().amax(dim=1, keepdim=True) * (1 / 254 + 2**-11) * 1.0001
            assert ((g.reshape(-1, 32) - blocks).abs() <= bound).all(), name


def load_gguf(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def relative_logit_error(a, b, ids) -> float:
    with torch.no_grad():
        x, y = a(ids).logits, b(ids).logits
    return float((x - y).abs().max() / y.abs().max())


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    """A short LoRA run on the tiny Llama, with a merged float32 export as the reference."""
    from tunelab.export import export_run, load_run_model

    tmp = tmp_path_factory.mktemp("gguf")
    run = train(load_config(data=toy_config(tmp, tiny_model_dir, name="gguf-lora", lr=5e-2, max_steps=3)))
    model, tokenizer, _ = load_run_model(run)
    return run, model.merge_and_unload(), tokenizer, export_run(run, merge=True)


@pytest.mark.parametrize("gguf_type", ["f16", "bf16", "q8_0"])
def test_gguf_of_a_lora_run_loads_in_transformers_with_the_merged_weights(lora_run, gguf_type, tmp_path):
    from tunelab.export import export_run
    from tunelab.export.gguf import describe

    run, merged, tokenizer, _ = lora_run
    out = export_run(run, gguf=gguf_type, output=str(tmp_path / "gguf"))
    path = out / f"gguf-lora-{gguf_type.upper()}.gguf"
    assert sorted(p.name for p in out.iterdir()) == sorted([path.name, "Modelfile", "README.md"])
    assert (out / "Modelfile").read_text() == f"FROM ./{path.name}\n"
    model = load_gguf(path)
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tokenizer)
    assert_weights_within_rounding(model, merged, gguf_type)
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert relative_logit_error(model, merged, ids["input_ids"]) <= LOGIT_TOLERANCE[gguf_type]
    card = (out / "README.md").read_text()
    assert f"GGUF ({gguf_type})" in card and f"llama-cli -m {path.name}" in card
    if gguf_type == "f16":  # the tokenizer inside the file (the same in every type; reading it takes seconds)
        from transformers import AutoTokenizer

        info = describe(path)
        assert info["architecture"] == "llama" and info["pre_tokenizer"] == "smollm"
        assert info["vocab_size"] == len(tokenizer) and info["chat_template"] == tokenizer.chat_template

        restored = AutoTokenizer.from_pretrained(out, gguf_file=path.name)
        text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False) + "négatif 123 !"
        assert restored(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_merged_safetensors_in_bf16_and_fp16(lora_run, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from tunelab.export import export_run

    run, merged, _, reference = lora_run
    with safe_open(str(reference / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}  # the default stays float32
    ids = torch.tensor([[1, 200, 300, 400, 500]])
    for flag, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        out = export_run(run, merge=True, dtype=flag, output=str(tmp_path / flag))
        with safe_open(str(out / "model.safetensors"), "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        assert {t.dtype for t in tensors.values()} == {dtype}
        state = merged.state_dict()
        assert all(torch.equal(t, state[k].to(dtype)) for k, t in tensors.items())  # merged in fp32, then cast
        loaded = AutoModelForCausalLM.from_pretrained(out, dtype=dtype)
        with torch.no_grad():
            a, b = loaded(ids).logits.float(), merged(ids).logits
        assert float((a - b).abs().max() / b.abs().max()) < 0.05
        assert f"merged model ({dtype})".replace("torch.", "") in (out / "README.md").read_text()


def test_export_cli_gguf_and_refusals(lora_run, tmp_path):
    run = lora_run[0]
    cli = [sys.executable, "-m", "tunelab.cli", "export", str(run)]
    done = subprocess.run(cli + ["--gguf-type", "q8_0", "--output", str(tmp_path / "q")], env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(str(tmp_path / "q")) and (tmp_path / "q" / "gguf-lora-Q8_0.gguf").exists()
    for args, message in ((["--dtype", "bf16"], "--dtype needs --merge"),
                          (["--gguf", "--dtype", "fp16"], "a GGUF's type is --gguf-type")):
        bad = subprocess.run(cli + args, env=subprocess_env(), capture_output=True, text=True, timeout=600)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_a_converter_failure_is_one_clear_error_and_leaves_no_file(lora_run, tmp_path):
    from tunelab.config.base import UserError
    from tunelab.export.gguf import convert_folder

    folder = tmp_path / "unknown-family"
    shutil.copytree(lora_run[3], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["NoSuchForCausalLM"]}))
    with pytest.raises(UserError, match="could not convert this model to GGUF: .*NoSuchForCausalLM"):
        convert_folder(folder, tmp_path / "x.gguf", "f16")
    assert not list(tmp_path.glob("*.gguf*"))


@pytest.mark.slow
def test_gguf_of_a_smollm2_lora_run(tmp_path, smollm2_dir):
    """The real model: SmolLM2-135M-Instruct (the embedded alias) after 2 LoRA steps, as f16 GGUF."""
    from tunelab.export import export_run, load_run_model
    from tunelab.export.gguf import describe

    raw = toy_config(tmp_path, "smollm2-135m-instruct", name="smol", lr=1e-3, max_steps=2, batch_size=4)
    run = train(load_config(data={**raw, "data": {**raw["data"], "max_length": 64}}))
    out = export_run(run, gguf="f16")
    info = describe(out / "smol-F16.gguf")
    assert info["architecture"] == "llama" and info["pre_tokenizer"] == "smollm" and info["vocab_size"] == 49152
    model, tokenizer, _ = load_run_model(run)
    merged = model.merge_and_unload()
    gguf_model = load_gguf(out / "smol-F16.gguf")
    assert_weights_within_rounding(gguf_model, merged, "f16")
    ids = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        a, b = gguf_model(ids).logits, merged(ids).logits
    assert float((a - b).abs().max() / b.abs().max()) <= 0.005
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= 0.95  # next-token choices, position by position
    card = (out / "README.md").read_text()
    assert "a Q4_1 GGUF de-quantized to float32" in card
