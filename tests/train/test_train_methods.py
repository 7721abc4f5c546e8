"""Every method and optimizer on the tiny model: the loss falls; only what should train changes."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tunelab.config import load_config
from tunelab.train import train
from tunelab.train.steps import TrainingDiverged

from train_helpers import toy_config


def losses(run):
    return [e["loss"] for e in map(json.loads, open(run / "metrics.jsonl")) if "loss" in e]


def full_batch(tmp_path, tiny_model_dir, **train_kw):
    # 16 training examples in one batch: every step sees the same data, so the loss must fall.
    kw = {"batch_size": 16, "max_steps": 6, **train_kw}
    raw = toy_config(tmp_path, tiny_model_dir, n=20, **kw)
    raw["data"]["leak_check"] = "report"  # all 16 training records, repeated reviews included
    return load_config(data=raw)


METHOD_LR = {"full": 2e-3, "freeze": 5e-3, "lora": 2e-2, "dora": 2e-2, "ia3": 0.3,
             "prompt_tuning": 5e-2, "prefix_tuning": 2e-2}


@pytest.mark.parametrize("method", list(METHOD_LR))
def test_every_method_lowers_the_loss(tmp_path, tiny_model_dir, method):
    cfg = full_batch(tmp_path, tiny_model_dir, method=method, lr=METHOD_LR[method], max_grad_norm=None,
                     **({"freeze": {"last_n_layers": 1}} if method == "freeze" else {}))
    run = train(cfg)
    curve = losses(run)
    # Full batch, same data every step: the loss falls at every step.
    assert len(curve) == 6 and all(b < a for a, b in zip(curve, curve[1:])) and curve[-1] < curve[0] - 0.02, curve
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and 0 < summary["trainable_params"] <= summary["total_params"]
    final = run / "final"
    if method in ("full", "freeze"):
        assert (final / "model.safetensors").exists()
    else:
        assert (final / "adapter_config.json").exists() and (final / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("optimizer,extra", [("sgd", {"momentum": 0.9, "nesterov": True, "lr": 0.5}),
                                             ("adam", {}), ("adamw", {"weight_decay": 0.01}),
                                             ("adafactor", {}), ("RMSprop", {"lr": 2e-3})])
def test_every_optimizer_lowers_the_loss(tmp_path, tiny_model_dir, optimizer, extra):
    kw = {"lr": 2e-2, **extra}
    run = train(full_batch(tmp_path, tiny_model_dir, method="lora", optimizer=optimizer, scheduler="cosine",
                           warmup_steps=1, **kw))
    curve = losses(run)
    assert curve[-1] < curve[1] - 0.05, curve  # step 1 has lr 0 (warmup)


def _capture_final_model(monkeypatch):
    import tunelab.train.loop as loop

    captured = {}
    original = loop.write_final

    def capture(model, tokenizer, folder, model_cfg, state_dict=None):
        captured["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        original(model, tokenizer, folder, model_cfg, state_dict)

    monkeypatch.setattr(loop, "write_final", capture)
    return captured


def test_lora_changes_only_adapter_weights(tmp_path, tiny_model_dir, monkeypatch):
    captured = _capture_final_model(monkeypatch)
    run = train(full_batch(tmp_path, tiny_model_dir, method="lora", lr=2e-2, weight_decay=0.1))
    base = load_file(f"{tiny_model_dir}/model.safetensors")
    after = captured["state"]
    adapter_keys = [k for k in after if "lora_" in k]
    assert adapter_keys
    compared = 0
    for key, value in after.items():
        if "lora_" in key:
            continue
        plain = key.replace("base_model.model.", "").replace(".base_layer", "")
        if plain in base:
            assert torch.equal(value, base[plain]), key  # bit-identical
            compared += 1
    assert compared >= len(base) - 1  # every base tensor (a tied head may share the embedding)
    assert any(after[k].abs().sum() > 0 for k in adapter_keys if "lora_B" in k)  # B starts at 0
    saved = load_file(str(run / "final" / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)


def test_freeze_keeps_earlier_layers_bit_identical(tmp_path, tiny_model_dir, monkeypatch):
    captured = _capture_final_model(monkeypatch)
    train(full_batch(tmp_path, tiny_model_dir, method="freeze", lr=5e-3, freeze={"last_n_layers": 1}))
    base = load_file(f"{tiny_model_dir}/model.safetensors")
    after = captured["state"]
    changed = {k for k in base if not torch.equal(after[k], base[k])}
    assert changed and all(k.startswith("model.layers.1.") for k in changed), changed
    assert torch.equal(after["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])


def test_seq2seq_t5_lora(tmp_path, tokenizer):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16,
                      decoder_start_token_id=tokenizer.pad_token_id, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path / "tiny-t5"
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run = train(full_batch(tmp_path, str(folder), method="lora", lr=3e-2, max_grad_norm=None))
    curve = losses(run)
    assert json.loads((run / "summary.json").read_text())["architecture"] == "seq2seq"
    assert curve[-1] < curve[0] - 0.05, curve


def test_packing_and_grad_accum_train(tmp_path, tiny_model_dir):
    run = train(load_config(data=toy_config(tmp_path, tiny_model_dir, packing=True, pack_length=256,
                                            batch_size=2, grad_accum=2, max_steps=4)))
    events = [json.loads(line) for line in open(run / "metrics.jsonl")]
    steps = [e for e in events if "loss" in e]
    assert len(steps) == 4
    # Packed rows hold several examples each (4 rows per step here), and every training
    # example appears exactly once in epoch 0.
    epoch0 = [e for e in steps if e["epoch"] == 0]
    assert max(e["examples"] for e in epoch0) >= 12
    kept = json.loads((run / "summary.json").read_text())["data_counts"]["tasks"]["toy"]["by_split"]["train"]["kept"]
    assert sum(e["examples"] for e in epoch0) == kept  # 48 records, 80% train, less inputs repeated in a later split


def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path, tiny_model_dir):
    cfg = full_batch(tmp_path, tiny_model_dir, method="full", optimizer="sgd", lr=1e12, max_grad_norm=None,
                     checkpoint_every=1, max_steps=6)
    with pytest.raises(TrainingDiverged) as err:
        train(cfg)
    run = tmp_path / "runs" / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    good = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert good and f"checkpoints/{good[-1]}" in str(err.value) and "lower train.lr" in str(err.value).lower()
    weights = load_file(str(run / "checkpoints" / good[-1] / "trainable.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_every_example_accounted_for(tmp_path, tiny_model_dir):
    data = toy_config(tmp_path, tiny_model_dir)["data"]
    data["max_length"] = 56  # toy examples are 52-62 tokens
    data["overlength"] = "reject"
    run = train(load_config(data=toy_config(tmp_path, tiny_model_dir, data=data, max_steps=2)))
    counts = json.loads((run / "summary.json").read_text())["data_counts"]["tasks"]["toy"]
    assert counts["rejected"] > 0
    assert counts["kept"] + counts["rejected"] + counts["skipped"] + counts["duplicates_removed"] == counts["read"]
    logged = json.loads(open(run / "metrics.jsonl").readline())
    assert logged["event"] == "data" and logged["counts"]["tasks"]["toy"]["rejected"] == counts["rejected"]


@pytest.mark.parametrize("every", [1, 2])
def test_gradient_checkpointing_keeps_the_loss_curve(tmp_path, tiny_model_dir, monkeypatch, every):
    """Recomputing activations (all layers, or every 2nd) changes memory, not the numbers."""
    import tunelab.train.setup as setup

    flags = []
    original = setup.enable_gradient_checkpointing

    def spy(model, every_n_layers):
        original(model, every_n_layers)
        flags.extend(layer.gradient_checkpointing for layer in model.model.layers)

    monkeypatch.setattr(setup, "enable_gradient_checkpointing", spy)
    plain = losses(train(full_batch(tmp_path / "plain", tiny_model_dir, method="lora", lr=2e-2)))
    ckpt = losses(train(full_batch(tmp_path / "ckpt", tiny_model_dir, method="lora", lr=2e-2,
                                   gradient_checkpointing=True, gradient_checkpointing_every=every)))
    assert flags == ([True, True] if every == 1 else [True, False])  # the tiny model has 2 layers
    assert ckpt == pytest.approx(plain, abs=1e-6)
