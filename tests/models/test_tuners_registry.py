"""The method registry (tunelab.models.tuners): every method declared once, and the one merge."""

import pytest
import torch

from tunelab.config import ConfigError
from tunelab.config.train import METHODS as CONFIG_METHODS
from tunelab.config.train import TrainConfig
from tunelab.models import load_model
from tunelab.models.tuners import (METHODS, PEFT_METHODS, adapter_method, apply_method, get_method,
                                   merge_into_base, methods_reading)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    torch.set_num_threads(1)


def test_config_names_are_the_registry_names():
    # config/ imports nothing from models/: its literal list must say the same, in the same order.
    assert CONFIG_METHODS == tuple(METHODS)
    assert all(name in TrainConfig.model_fields for m in METHODS.values() for name in m.options)


def test_what_each_method_declares():
    assert PEFT_METHODS == ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "qlora")
    assert [n for n, m in METHODS.items() if m.peft_forward] == ["prompt_tuning", "prefix_tuning"]
    assert [n for n, m in METHODS.items() if m.half_frozen_weights] == ["lora", "dora", "ia3", "prompt_tuning",
                                                                      "prefix_tuning"]
    assert [n for n, m in METHODS.items() if m.quantization is not None] == ["qlora"]
    assert [n for n, m in METHODS.items() if m.regularization] == ["ia3", "prompt_tuning", "prefix_tuning"]
    assert methods_reading("lora") == ("lora", "dora", "qlora") and methods_reading("qlora") == ("qlora",)
    assert [n for n, m in METHODS.items() if m.export_refusal()] == ["prompt_tuning", "prefix_tuning", "qlora"]
    assert get_method("prefix_tuning").export_refusal() == (
        "a prefix_tuning adapter adds virtual tokens and cannot be merged into the weights; export it without "
        "--merge or --gguf (PEFT format)")
    with pytest.raises(ConfigError, match="choose from full, freeze, lora"):
        get_method("adapterx")


def test_merge_folds_lora_into_the_weights_and_keeps_or_refuses_virtual_tokens(tiny_model_dir):
    ids = torch.tensor([[1, 200, 300, 400]])
    model, _ = load_model(tiny_model_dir)
    model = apply_method(model, TrainConfig(method="lora", lora={"r": 2}), "causal", tiny_model_dir)
    assert adapter_method(model).name == "lora"
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # an adapter that changes the output
        before = model(ids).logits
        merged = merge_into_base(model)
        assert not hasattr(merged, "peft_config") and adapter_method(merged) is None
        # float32 rounding: x(W + sBA) vs xW + s(xA)B, with an adapter that moves the logits by ~0.1
        assert torch.allclose(merged(ids).logits, before, atol=1e-4)
        assert not torch.allclose(merged(ids).logits, load_model(tiny_model_dir)[0](ids).logits, atol=1e-2)
    assert merge_into_base(merged, "full") is merged  # a whole model: nothing to merge

    prompt, _ = load_model(tiny_model_dir)
    prompt = apply_method(prompt, TrainConfig(method="prompt_tuning"), "causal", tiny_model_dir)
    assert adapter_method(prompt).name == "prompt_tuning"
    assert merge_into_base(prompt, keep_unmergeable=True) is prompt  # evaluation runs it as it is
    with pytest.raises(ConfigError, match="a prompt_tuning adapter adds virtual tokens"):
        merge_into_base(prompt)
