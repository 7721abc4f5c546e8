"""An adapter names its base by alias, hub id or your own folder, never by a cache path: copied to
another folder and loaded with the tunelab cache elsewhere, it gives the same outputs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import toy_config  # noqa: E402


def logits_of(spec, text: str):
    import torch

    from tunelab.evaluate.loading import LazyModel

    lm = LazyModel(spec)
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return lm.model(input_ids=ids).logits[0, -1], lm.model.config.name_or_path


def test_local_base_is_recorded_as_its_absolute_folder(tmp_path, tiny_model_dir):
    from tunelab.config import load_config
    from tunelab.train import train

    run = train(load_config(data=toy_config(tmp_path, tiny_model_dir, max_steps=1)))
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())


@pytest.mark.slow
def test_alias_adapter_loads_after_the_cache_moves(tmp_path, smollm2_dir, monkeypatch):
    import torch

    from tunelab.config import load_config
    from tunelab.evaluate.loading import model_spec
    from tunelab.train import train

    raw = toy_config(tmp_path, "smollm2-135m-instruct", n=16, max_steps=2, batch_size=4)
    run = train(load_config(data=raw))
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == "smollm2-135m-instruct"  # not .../tunelab/models/...
    before, _ = logits_of(model_spec(adapter=str(run / "final")), "Is this review positive?")
    moved = tmp_path / "elsewhere" / "my-adapter"
    shutil.copytree(run / "final", moved)
    shutil.rmtree(run)
    # Another machine: its tunelab cache lives elsewhere (a copy of the conversion, which
    # test_models_load.py checks from an empty home: converting again would take ~20 s here).
    shutil.copytree(smollm2_dir, tmp_path / "other-home" / "models" / "smollm2-135m-instruct")
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "other-home"))
    after, base_folder = logits_of(model_spec(adapter=str(moved)), "Is this review positive?")
    assert base_folder == str(tmp_path / "other-home" / "models" / "smollm2-135m-instruct")
    assert torch.allclose(before, after, atol=1e-5)
