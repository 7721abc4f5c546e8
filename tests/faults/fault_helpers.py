"""Run the CLI as a user would and check the one-line error contract (imported as a plain module).

Every fault test ends in `one_error_line(...)`: exit code != 0, no traceback, and exactly one
`tunelab: error:` line, which is the last line on stderr (progress lines such as
"preparing data: ..." may come before it; a message spanning lines would not be last).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tunelab.cli.main import main

TOY_RECORDS = [{"text": word, "label": i % 2} for i, word in enumerate(
    "good bad great awful fine dull superb weak lovely boring".split() * 2)]


def one_error_line(rc: int, stderr: str) -> str:
    """The error line after checking the contract; the assertion message shows the whole stderr."""
    assert rc != 0, f"exit code 0; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("tunelab: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"not one final error line:\n{stderr}"
    return errors[0]


def cli_error(capsys, *argv: str) -> str:
    """`tunelab ARGV...` in this process; the checked error line."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return one_error_line(rc, capsys.readouterr().err)


def tunelab_command() -> list[str]:
    """The installed `tunelab` script next to this interpreter (what a user types)."""
    script = Path(sys.executable).parent / "tunelab"
    if script.exists():
        return [str(script)]
    if os.environ.get("CI"):  # the package is installed in CI: a missing script is a broken setup
        raise AssertionError(f"{script} is missing: is tunelab installed in this environment?")
    return [sys.executable, "-m", "tunelab.cli"]


def subprocess_error(*argv: str, cwd: Path | None = None) -> str:
    """`tunelab ARGV...` as a separate process; the checked error line."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("TUNELAB_DEBUG", None)
    done = subprocess.run(tunelab_command() + [str(a) for a in argv], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)
    return one_error_line(done.returncode, done.stderr)


def write_config(folder: Path, model_dir: str, task: dict | None = None, **sections) -> Path:
    """A small experiment YAML: one classification task (inline records unless `task` says),
    one training step, everything under `folder`."""
    task = task or {"source": {"records": TOY_RECORDS}}
    config = {
        "name": "run",
        "output_dir": str(folder / "runs"),
        "model": {"name": model_dir},
        "data": {"max_length": 64, "split": {"train": 0.8, "validation": 0.1, "test": 0.1},
                 "tasks": [{"name": "toy", "kind": "classification", "fields": {"text": "text", "label": "label"},
                            "labels": {0: "negative", 1: "positive"}, **task}]},
        "train": {"method": "lora", "max_steps": 1, "batch_size": 4, "precision": "fp32", "progress": "off"},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def copy_without_weights(model_dir: str, folder: Path) -> Path:
    """The config and tokenizer files of a model folder, without its safetensors weights."""
    folder.mkdir(parents=True, exist_ok=True)
    for item in Path(model_dir).iterdir():
        if item.is_file() and not item.name.endswith(".safetensors"):
            shutil.copy(item, folder / item.name)
    return folder
