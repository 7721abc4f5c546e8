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


def test_alias_converts_once_offline_into_an_empty_home_then_reuses_it(tmp_path):
    """Fresh processes, HF_HUB_OFFLINE=1, an empty TUNELAB_HOME: the first converts, the second reuses."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TUNELAB_HOME=str(tmp_path / "home"),
               HF_HOME=str(tmp_path / "hf"))
    code = ("import json; from tunelab.models.resolver import ALIASES, is_converted, resolve_model; "
            "a = ALIASES['smollm2-135m-instruct']; before = is_converted(a); "
            "print(json.dumps({'before': before, 'path': resolve_model(a.name)}))")
    folder = tmp_path / "home" / "models" / "smollm2-135m-instruct"
    runs, written = [], []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        st = (folder / "model.safetensors").stat()
        written.append((st.st_ino, st.st_mtime_ns))
    first, second = runs
    assert first["before"] is False and second["before"] is True and first["path"] == second["path"] == str(folder)
    stamp = json.loads((folder / "tunelab-conversion.json").read_text())
    assert stamp["alias"] == "smollm2-135m-instruct" and stamp["source"].endswith(".gguf")
    assert (folder / "model.safetensors").stat().st_size > 200_000_000 and (folder / "tokenizer.json").exists()
    assert "chat_template" in (folder / "tokenizer_config.json").read_text() or (folder / "chat_template.jinja").exists()
    # the second process found the conversion and rewrote nothing
    assert written[0] == written[1]
    assert not list((tmp_path / "hf").rglob("*.safetensors"))  # nothing went to the hub cache
