"""Export (adapter and merged), the train CLI with overrides, and clean user errors."""

import subprocess
import sys

import torch
import yaml

from tunelab.config import load_config
from tunelab.train import train
from train_helpers import subprocess_env, toy_config


def test_export_merged_model_loads_in_plain_transformers(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from tunelab.models import load_model
    from tunelab.export import export_run

    run = train(load_config(data=toy_config(tmp_path, tiny_model_dir, lr=5e-2, max_steps=3)))
    merged = export_run(run, merge=True)
    adapter = export_run(run, merge=False)
    assert (merged / "model.safetensors").exists() and not (merged / "adapter_config.json").exists()
    assert (adapter / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(merged)
    tuned, _ = load_model(tiny_model_dir, adapter=str(run))
    base, _ = load_model(tiny_model_dir)
    ids = torch.tensor([[1, 200, 300, 400, 500]])
    with torch.no_grad():
        a, b, c = plain(ids).logits, tuned(ids).logits, base(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-4)  # the adapter changed something


def test_export_of_best_checkpoint(tmp_path, tiny_model_dir):
    from tunelab.export import export_run

    run = train(load_config(data=toy_config(tmp_path, tiny_model_dir, method="full", lr=1e-3, max_steps=2,
                                            eval_every=1)))
    out = export_run(run, merge=True, checkpoint="best", output=str(tmp_path / "best"))
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()


def test_cli_train_with_overrides_and_user_errors(tmp_path, tiny_model_dir):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(toy_config(tmp_path, tiny_model_dir, max_steps=2)))
    done = subprocess.run([sys.executable, "-m", "tunelab.cli", "train", str(config), "train.method=ia3",
                           "name=cli"], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "runs" / "cli"
    assert done.stdout.strip().endswith(str(run))
    assert yaml.safe_load((run / "config.resolved.yaml").read_text())["train"]["method"] == "ia3"
    # Same name again without --resume: a one-line error, no traceback.
    again = subprocess.run([sys.executable, "-m", "tunelab.cli", "train", str(config), "name=cli"],
                           env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr
    typo = subprocess.run([sys.executable, "-m", "tunelab.cli", "train", str(config), "train.lrr=1"],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert typo.returncode == 2 and "did you mean 'lr'" in typo.stderr
