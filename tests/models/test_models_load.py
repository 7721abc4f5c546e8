import json
import subprocess
import sys

import pytest
import torch

from tunelab.config import ConfigError
from tunelab.config.model import ModelConfig
from tunelab.config.train import TrainConfig
from tunelab.models import load_model
from tunelab.models.tuners import apply_method, count_parameters


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    torch.set_num_threads(1)


def test_load_model_causal_with_dtype_and_pad(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir)
    assert model.dtype == torch.float32 and not model.training
    assert tokenizer.pad_token_id is not None and model.config.pad_token_id == tokenizer.pad_token_id
    half, _ = load_model(ModelConfig(name=tiny_model_dir, dtype="bfloat16"))
    assert half.dtype == torch.bfloat16
    forced, _ = load_model(tiny_model_dir, dtype="float16")
    assert forced.dtype == torch.float16


def test_trust_remote_code_is_off_by_default():
    assert ModelConfig().trust_remote_code is False


def test_missing_model_folder_is_a_clear_error(tmp_path):
    from tunelab.models import ModelResolutionError

    with pytest.raises(ModelResolutionError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    assert issubclass(ModelResolutionError, ConfigError)  # the CLI prints it without a traceback


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prompt_tuning", "prefix_tuning"])
def test_peft_methods_train_a_small_fraction(tiny_model_dir, method):
    model, _ = load_model(tiny_model_dir)
    model = apply_method(model, TrainConfig(method=method), "causal", tiny_model_dir)
    trainable, total = count_parameters(model)
    assert 0 < trainable < total * 0.05
    assert hasattr(model, "peft_config")


def test_lora_targets_by_name(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    cfg = TrainConfig(method="lora", lora={"target_modules": ["q_proj", "v_proj"], "r": 2})
    model = apply_method(model, cfg, "causal", tiny_model_dir)
    names = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.requires_grad}
    assert names == {"q_proj", "v_proj"}


def test_freeze_last_layer_and_named_modules(tiny_model_dir):
    model, _ = load_model(tiny_model_dir)
    cfg = TrainConfig(method="freeze", freeze={"last_n_layers": 1, "modules": ["model.norm"]})
    model = apply_method(model, cfg, "causal", tiny_model_dir)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.layers.1.") or n == "model.norm.weight" for n in trainable)
    assert "model.norm.weight" in trainable
    with pytest.raises(ConfigError, match="matches no parameter"):
        apply_method(load_model(tiny_model_dir)[0], TrainConfig(method="freeze", freeze={"modules": ["nope"]}),
                     "causal", tiny_model_dir)


def test_qlora_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    from tunelab.models.tuners.qlora import check_available

    with pytest.raises(ConfigError, match="qlora needs a CUDA GPU"):
        check_available()


def test_models_cli_lists_aliases():
    out = subprocess.run([sys.executable, "-m", "tunelab.cli", "models", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["alias"] == "smollm2-135m-instruct" and rows[0]["installed"] in (True, False)
    plain = subprocess.run([sys.executable, "-m", "tunelab.cli", "models"], capture_output=True, text=True)
    assert "smollm2-135m-instruct" in plain.stdout
