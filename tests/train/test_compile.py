"""train.compile: compiled decoder layers train as the uncompiled ones do, within bf16 rounding;
a compiled run resumes in a new process bit for bit; auto compiles only where it pays."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tunelab.config import load_config
from tunelab.config.base import ConfigError
from tunelab.train import train
from tunelab.train.compile import PAYBACK_FLOPS, check_compile, cpp_compiler, estimated_flops, should_compile
from train_helpers import subprocess_env, toy_config


def config(tmp_path, model_dir, **train_keys):
    return load_config(data=toy_config(tmp_path, model_dir, **train_keys))


def step_losses(run):
    return {e["step"]: e["loss"] for e in map(json.loads, open(run / "metrics.jsonl")) if "loss" in e}


def test_auto_compiles_only_where_it_pays_and_true_is_refused_where_it_cannot_run(tmp_path, tiny_model_dir):
    auto = config(tmp_path, tiny_model_dir)
    assert auto.train.compile == "auto"
    assert cpp_compiler() is not None, "inductor finds no C++ compiler: install g++ (the README's setup does)"
    assert not should_compile(auto, 1, "cpu", PAYBACK_FLOPS / 2)
    assert should_compile(auto, 1, "cpu", PAYBACK_FLOPS)
    for world, device in ((2, "cpu"), (1, "cuda")):
        assert not should_compile(auto, world, device, PAYBACK_FLOPS)
    assert not should_compile(config(tmp_path, tiny_model_dir, gradient_checkpointing=True), 1, "cpu", PAYBACK_FLOPS)
    assert not should_compile(config(tmp_path, tiny_model_dir, compile=False), 1, "cpu", 10 * PAYBACK_FLOPS)
    assert should_compile(config(tmp_path, tiny_model_dir, compile=True), 1, "cpu", 0)
    with pytest.raises(ConfigError, match="train.compile=true: not supported with train.gradient_checkpointing"):
        check_compile(config(tmp_path, tiny_model_dir, compile=True, gradient_checkpointing=True), 1)
    with pytest.raises(ConfigError, match="not supported with several processes"):
        check_compile(config(tmp_path, tiny_model_dir, compile=True), 2)
    check_compile(auto, 2)  # auto is never refused: it skips
    # model.architecture is "auto" in the config: the loaded model's architecture decides
    assert not should_compile(auto, 1, "cpu", PAYBACK_FLOPS, "seq2seq")
    with pytest.raises(ConfigError, match="not supported with seq2seq models"):
        check_compile(config(tmp_path, tiny_model_dir, compile=True), 1, "seq2seq")
    dpo = toy_config(tmp_path, tiny_model_dir, compile=True, objective="dpo")
    dpo["data"] = {"tasks": [{"name": "prefs", "kind": "preference", "source": {"records": [
        {"prompt": "Say hi", "chosen": "hi", "rejected": "no"}]}}]}
    with pytest.raises(ConfigError, match="not supported with objective dpo"):
        check_compile(load_config(data=dpo), 1)
    # SmolLM2-135M LoRA at ~1,275 tokens a step (the benchmark's data): 16 steps are too short to
    # pay back the compile, 64 are not
    assert estimated_flops(134_515_008, False, 1275, 16) < PAYBACK_FLOPS < estimated_flops(134_515_008, False, 1275, 64)
    assert estimated_flops(10, True, 3, 2) == 6 * 10 * 3 * 2


def test_compiled_training_is_the_uncompiled_within_bf16_rounding(tmp_path, tiny_model_dir):
    from torch._dynamo.utils import counters

    keys = dict(precision="bf16", max_steps=4, batch_size=8, eval_every=2, lr=1e-2)
    plain = train(config(tmp_path, tiny_model_dir, name="plain", **keys))
    graphs = counters["stats"]["unique_graphs"]
    compiled = train(config(tmp_path, tiny_model_dir, name="compiled", compile=True, **keys))
    assert json.loads((plain / "summary.json").read_text())["compiled"] is False  # auto: a toy run never pays
    assert json.loads((compiled / "summary.json").read_text())["compiled"] is True
    # one graph for every layer and batch shape, times two for layer 0 (its input needs no
    # gradient), times two for sdpa's mask (none for a batch without padding); validation (no
    # gradients) ran the layers eagerly: nothing recompiled for it
    assert counters["stats"]["unique_graphs"] - graphs <= 4
    a, b = step_losses(plain), step_losses(compiled)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert a[1] != b[1] or a[2] != b[2]  # fused fp32 reductions: not the same bits ...
    assert all(abs(a[s] - b[s]) <= 5e-4 * abs(a[s]) for s in a), (a, b)  # ... but bf16-close
    val = [[e["val_loss"] for e in map(json.loads, open(r / "metrics.jsonl")) if "val_loss" in e]
           for r in (plain, compiled)]
    assert len(val[0]) == len(val[1]) >= 2 and all(abs(x - y) <= 5e-4 * x for x, y in zip(*val)), val


def test_compiled_run_resumes_bit_identically_in_a_new_process(tmp_path, tiny_model_dir):
    keys = dict(precision="bf16", batch_size=4, lr=1e-2, scheduler="constant", checkpoint_every=2, compile=True)
    reference = train(config(tmp_path, tiny_model_dir, name="reference", max_steps=4, **keys))
    first = toy_config(tmp_path, tiny_model_dir, name="resumed", max_steps=2, **keys)
    run = train(load_config(data=first))
    path = tmp_path / "resumed.yaml"
    path.write_text(yaml.safe_dump({**first, "train": {**first["train"], "max_steps": 4}}))
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "train", str(path), "--resume"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert step_losses(run) == step_losses(reference)  # bit-identical floats, every step
    ref_w = load_file(str(reference / "final" / "adapter_model.safetensors"))
    got_w = load_file(str(run / "final" / "adapter_model.safetensors"))
    assert ref_w.keys() == got_w.keys() and all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)


def test_a_layer_that_cannot_compile_runs_uncompiled_with_one_warning(tmp_path, tiny_model_dir, monkeypatch, capfd):
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()  # no graph this process compiled before: the compile must really run
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)  # nor one from inductor's cache on disk
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("no-such-c++-compiler",))  # a machine without g++
    keys = dict(precision="bf16", max_steps=2, batch_size=8, compile=True)
    run = train(config(tmp_path, tiny_model_dir, name="broken", **keys))
    err = capfd.readouterr().err
    assert err.count("train.compile: LlamaDecoderLayer could not be compiled and runs uncompiled") == 1, err[-3000:]
    assert json.loads((run / "summary.json").read_text())["compiled"] is False
    torch._dynamo.reset()
    monkeypatch.undo()
    plain = train(config(tmp_path, tiny_model_dir, name="plain", **{**keys, "compile": False}))
    assert step_losses(run) == step_losses(plain)  # eager from the first step: the uncompiled run's numbers
