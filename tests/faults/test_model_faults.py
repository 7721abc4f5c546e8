"""Unsafe model folders, injected for real and run through the CLI: pickle-only weights (model and
adapter), a pickle whose payload runs a command, and a model that needs remote code.

Each refusal is one `tunelab: error:` line naming the opt-in key, no traceback, exit != 0; the
malicious payload and the remote code never run (they would create a file).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from fault_helpers import cli_error, copy_without_weights, subprocess_error, write_config

from tunelab.cli.main import main


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    torch.set_num_threads(1)  # two shared cores: more threads make a 2-layer model crawl


@pytest.fixture(scope="module")
def pickle_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model with its weights as pytorch_model.bin only (transformers 5 always writes
    safetensors, so the pickle is written the way older transformers did: a torch.save'd state dict)."""
    from transformers import AutoModelForCausalLM

    folder = copy_without_weights(tiny_model_dir, tmp_path_factory.mktemp("pickle-model"))
    torch.save(AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict(), folder / "pytorch_model.bin")
    assert not list(folder.glob("*.safetensors"))
    return str(folder)


class Payload:
    """Unpickling this runs `touch <marker>` (the classic __reduce__ exploit)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_pickle_only_model_is_refused_naming_the_opt_in(capsys, tmp_path, pickle_model_dir):
    config = write_config(tmp_path, pickle_model_dir)
    line = cli_error(capsys, "train", config)
    assert line == (f"tunelab: error: {pickle_model_dir}: the model weights are a pickle (pytorch_model.bin), "
                    f"which can run code when loaded; tunelab reads safetensors only unless you set "
                    f"model.allow_pickle: true for a folder you trust (or convert the weights to safetensors)")


def test_pickle_only_model_trains_with_the_opt_in_through_weights_only_load(capsys, tmp_path, pickle_model_dir,
                                                                            monkeypatch):
    calls = []
    real_load = torch.load

    def spy_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy_load)
    config = write_config(tmp_path, pickle_model_dir)
    rc = main(["train", str(config), "model.allow_pickle=true"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    assert calls and all(flag is True for flag in calls)  # every torch.load refused non-tensors
    assert (tmp_path / "runs" / "run" / "final" / "adapter_config.json").exists()


def test_malicious_pickle_with_the_opt_in_is_refused_and_never_runs(tmp_path, tiny_model_dir):
    marker = tmp_path / "PWNED"
    folder = copy_without_weights(tiny_model_dir, tmp_path / "evil-model")
    torch.save({"model.embed_tokens.weight": Payload(marker)}, folder / "pytorch_model.bin")
    config = write_config(tmp_path, str(folder))
    line = subprocess_error("train", config, "model.allow_pickle=true")
    assert line == (f"tunelab: error: {folder}: refused the model's pickle weights: they call posix.system, "
                    f"not just tensors (torch.load with weights_only=True stopped it; nothing was run); "
                    f"use safetensors weights from a source you trust")
    assert "weights_only=False" not in line
    assert not marker.exists()


def test_pickle_only_adapter_is_refused(capsys, tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(adapter, safe_serialization=False)
    assert (adapter / "adapter_model.bin").exists() and not list(adapter.glob("*.safetensors"))
    data = tmp_path / "sst2.tsv"
    data.write_text("sentence\tlabel\n" + "good film\t1\nbad film\t0\n" * 10, encoding="utf-8")
    line = cli_error(capsys, "eval", "--model", tiny_model_dir, "--adapter", adapter, "--task", f"sst2={data}",
                     "--limit", "2", "--no-cache", "--output", tmp_path / "out")
    assert line == (f"tunelab: error: {adapter}: the adapter weights are a pickle (adapter_model.bin), "
                    f"which can run code when loaded; tunelab reads safetensors only unless you set "
                    f"model.allow_pickle: true for a folder you trust (or convert the weights to safetensors)")


def test_malicious_pickle_adapter_with_the_opt_in_is_refused(tmp_path, tiny_model_dir):
    from tunelab.config import ConfigError
    from tunelab.config.model import ModelConfig
    from tunelab.models import load_model

    marker = tmp_path / "PWNED"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    torch.save({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": Payload(marker)},
               adapter / "adapter_model.bin")
    with pytest.raises(ConfigError) as err:  # no CLI command loads an adapter with a config's model: section
        load_model(ModelConfig(name=tiny_model_dir, allow_pickle=True), adapter=str(adapter))
    assert str(err.value).startswith(f"{adapter}: refused the adapter's pickle weights: they call posix.system")
    assert not marker.exists()


def test_remote_code_model_is_refused_naming_trust_remote_code(tmp_path, tiny_model_dir):
    marker = tmp_path / "REMOTE_CODE_RAN"
    folder = copy_without_weights(tiny_model_dir, tmp_path / "remote-model")
    (folder / "model.safetensors").symlink_to(Path(tiny_model_dir) / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tunelab_custom", architectures=["CustomForCausalLM"],
                  auto_map={"AutoConfig": "configuration_custom.CustomConfig",
                            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import LlamaConfig\n\n\nclass CustomConfig(LlamaConfig):\n    model_type = 'tunelab_custom'\n")
    config_file = write_config(tmp_path, str(folder))
    line = subprocess_error("train", config_file)
    assert line == (f"tunelab: error: {folder}: the model needs its own Python code (auto_map in its config), "
                    f"which tunelab runs only if you set model.trust_remote_code: true for a model you trust")
    assert not marker.exists()
