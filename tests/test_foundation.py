import subprocess
import sys

import pytest

from tunelab.config import ConfigError, load_config


def test_cli_version_and_help():
    out = subprocess.run([sys.executable, "-m", "tunelab.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("tunelab ")
    out = subprocess.run([sys.executable, "-m", "tunelab.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "COMMAND" in out.stdout


def test_unknown_key_gets_did_you_mean(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\nseeed: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "seeed" in str(err.value) and "did you mean 'seed'" in str(err.value)
    assert str(cfg) in str(err.value)


def test_overrides_apply_and_validate(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\nmodel:\n  name: smollm2-135m-instruct\n")
    loaded = load_config(cfg, overrides=["seed=7", "model.dtype=bfloat16"])
    assert loaded.seed == 7 and loaded.model.dtype == "bfloat16"
    with pytest.raises(ConfigError) as err:
        load_config(cfg, overrides=["model.dtype=int3"])
    assert "model.dtype" in str(err.value)


def test_yaml_syntax_error_names_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\nmodel: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert "line" in str(err.value)


def test_init_writes_a_starter_config_that_loads(tmp_path, capsys):
    from tunelab.cli.main import main

    path = tmp_path / "tunelab.yaml"
    assert main(["init", str(path)]) == 0
    cfg = load_config(path)
    assert cfg.train.method == "lora" and cfg.data.tasks[0].kind == "classification"
    assert main(["init", str(path)]) == 2  # never overwrites without --force
    assert "exists; pass --force" in capsys.readouterr().err
