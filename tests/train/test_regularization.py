"""L2-SP and EWC (train.regularization, train/regularize.py) on tiny random models.

The closed-form penalty gradients equal autograd's gradient of the penalty written out here (full
fine-tuning, LoRA with and without fan_in_fan_out, DoRA; L2-SP and EWC with a random Fisher);
weight 0 is plain training bit for bit; a weight keeps the model nearer its start (EWC: the
high-Fisher weights most); the Fisher is the mean of per-example squared gradients computed here
with the plain model, saved with the run and loaded on resume; a SIGKILLed EWC run resumes to the
uninterrupted run's weights; refusals are one clear line.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tunelab.config import ConfigError, load_config
from tunelab.train import train
from tunelab.train.regularize import check_regularization, fisher_examples, fisher_targets, load_saved, make_regularizer
from tunelab.train.setup import build_model
from train_helpers import subprocess_env, toy_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
from families import build_family  # noqa: E402

KILL_AT = str(ROOT / "faults" / "kill_at.py")
LAMBDA = 3.0


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def step_losses(run: Path) -> list[float]:
    return [e["loss"] for e in events(run) if "loss" in e]


def ewc(tasks=("toy",), examples=8, weight=LAMBDA) -> dict:
    return {"kind": "ewc", "weight": weight, "fisher": {"tasks": list(tasks), "examples": examples}}


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, tokenizer) -> str:
    return str(build_family("gpt2", tmp_path_factory.mktemp("tiny-gpt2"), tokenizer))


def built(tmp_path, model_dir, method, **lora):
    cfg = load_config(data=toy_config(tmp_path, model_dir, method=method, lora={"r": 4, **lora}))
    return build_model(cfg, "fp32")[0]


def moved(model, seed: int) -> None:
    """Move every trained tensor away from its start (LoRA's B starts at 0: dW would be 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
            p.grad = None


def random_fisher(model, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) * 2 for n, p in fisher_targets(model).items()}


def lora_layers(model):
    from peft.tuners.lora import LoraLayer

    names = {id(p): n for n, p in model.named_parameters()}
    return [(m, names[id(m.get_base_layer().weight)]) for m in model.modules() if isinstance(m, LoraLayer)]


def formula(model, theta0: dict, fisher: dict | None, dora: bool) -> torch.Tensor:
    """(LAMBDA/2) sum c (change)^2 written from the definitions: peft's own get_delta_weight (its
    layout, fan_in_fan_out included) for LoRA; DoRA's merged weight m / ||W + dW||_row (W + dW) - W."""
    c = (lambda n: fisher[n]) if fisher else (lambda n: 1.0)
    total = 0.0
    skip = set()
    for m, base_name in lora_layers(model):
        delta = m.get_delta_weight("default")  # layout of the base weight
        skip |= {id(m.lora_A["default"].weight), id(m.lora_B["default"].weight)}
        if dora:
            magnitude = m.lora_magnitude_vector["default"].weight
            skip.add(id(magnitude))
            W = m.get_base_layer().weight
            direction = W + delta
            delta = magnitude.view(-1, 1) / direction.norm(dim=1, keepdim=True) * direction - W
        total = total + (c(base_name) * delta ** 2).sum()
    for n, p in model.named_parameters():
        if p.requires_grad and id(p) not in skip:
            total = total + (c(n) * (p - theta0[n]) ** 2).sum()
    return LAMBDA / 2 * total


@pytest.mark.parametrize("method,family,kind", [
    ("full", "llama", "l2sp"), ("full", "llama", "ewc"), ("freeze", "llama", "ewc"),
    ("lora", "llama", "l2sp"), ("lora", "llama", "ewc"), ("lora", "gpt2", "ewc"),
    ("dora", "llama", "ewc"), ("dora", "llama", "l2sp")])
def test_closed_form_gradient_equals_autograd(tmp_path, tiny_model_dir, gpt2_dir, method, family, kind):
    model = built(tmp_path, tiny_model_dir if family == "llama" else gpt2_dir, method,
                  **({"modules_to_save": ["lm_head"]} if (method, kind) == ("lora", "ewc") and family == "llama"
                     else {}))
    fisher = random_fisher(model, 1) if kind == "ewc" else None
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    reg = make_regularizer(model, LAMBDA, kind, fisher)
    moved(model, 2)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    want_value = formula(model, theta0, fisher, dora=method == "dora")
    want = torch.autograd.grad(want_value, [p for _, p in trained])
    value = reg.add_gradient()
    assert value == pytest.approx(float(want_value.detach()), rel=1e-5) and value > 0
    for (n, p), g in zip(trained, want):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7, msg=lambda m: f"{n}: {m}")
    if family == "gpt2":
        assert any(m.fan_in_fan_out for m, _ in lora_layers(model))  # the transposed layout was exercised


def test_dora_change_is_peft_merged_weight_minus_base(tmp_path, tiny_model_dir):
    import copy

    model = built(tmp_path, tiny_model_dir, "dora")
    reg = make_regularizer(model, LAMBDA, "l2sp")
    moved(model, 4)
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    from tunelab.train.regularize import dora_change, lora_parts

    for a in reg.adapted:
        A, B, _ = lora_parts(a)
        change = dora_change(a.module, a.adapter, A, B, a.module.lora_magnitude_vector[a.adapter].weight)
        name = next(n for n, m in model.named_modules() if m is a.module).replace("base_model.model.", "")
        torch.testing.assert_close(change + a.module.get_base_layer().weight, merged[name + ".weight"],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_weight_zero_is_plain_training_bit_for_bit(tmp_path, tiny_model_dir, method):
    def run(name, reg):
        extra = {"regularization": reg} if reg else {}
        return train(load_config(data=toy_config(tmp_path, tiny_model_dir, name=name, method=method, max_steps=4,
                                                 lora={"r": 4, "dropout": 0.1}, **extra)))

    plain = run("plain", None)
    for name, reg in (("l2sp0", {"kind": "l2sp", "weight": 0.0}), ("ewc0", ewc(weight=0.0))):
        other = run(name, reg)
        assert step_losses(other) == step_losses(plain)
        assert not (other / "regularization").exists()
        a, b = (load_file(str(next((r / "final").glob("*.safetensors")))) for r in (plain, other))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def final_full(run: Path) -> dict:
    return load_file(str(run / "final" / "model.safetensors"))


def test_penalty_keeps_weights_near_the_start_and_ewc_the_high_fisher_ones_most(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file as load

    start = load(str(Path(tiny_model_dir) / "model.safetensors"))

    def run(name, reg):
        extra = {"regularization": reg} if reg else {}
        out = train(load_config(data=toy_config(tmp_path, tiny_model_dir, name=name, method="full", max_steps=12,
                                                lr=1e-3, **extra)))
        return out, final_full(out)

    def distance(w):
        return sum(float(((w[k] - start[k]) ** 2).sum()) for k in start) ** 0.5

    _, plain = run("plain", None)
    l2sp_run, l2sp = run("l2sp", {"kind": "l2sp", "weight": 30.0})
    assert distance(l2sp) < 0.9 * distance(plain)
    penalties = [e["penalty"] for e in events(l2sp_run) if "loss" in e]
    assert len(penalties) == 12 and penalties[0] == 0.0 and all(p > 0 for p in penalties[1:])

    ewc_run, ewc_w = run("ewc", ewc(weight=1e4))
    fisher = load(str(ewc_run / "regularization" / "fisher.safetensors"))
    keys = [k for k in sorted(fisher) if ".layers." in k]  # not the embedding: most of its rows are never used
    F = torch.cat([fisher[k].flatten() for k in keys])
    moved_by = lambda w: torch.cat([(w[k] - start[k]).abs().flatten() for k in keys])  # noqa: E731
    ratio = moved_by(ewc_w) / moved_by(plain).clamp_min(1e-12)
    order = F.argsort()
    tenth = len(order) // 10
    low, high = ratio[order[:tenth]].median(), ratio[order[-tenth:]].median()
    # AdamW normalises each step, so the penalty shows as a pull back, strongest where F is largest
    # (measured: 0.49 of plain training's movement for the top tenth, 1.09 for the bottom tenth)
    assert high < 0.6 * low, (float(high), float(low))


def per_example_fisher(model, examples) -> dict:
    """The Fisher from its definition, with the plain transformers model: for each example, the
    gradient of sum over answer tokens of log p(token | before), squared; then the mean."""
    from tunelab.train.batching import IGNORE

    model.eval()
    params = dict(model.named_parameters())
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    for ex in examples:
        ids = torch.tensor([ex.input_ids])
        labels = torch.tensor(ex.label_ids)[1:]
        logp = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        keep = labels != IGNORE
        assert keep.any()
        log_p_answer = logp[keep].gather(1, labels[keep, None]).sum()
        for n, g in zip(params, torch.autograd.grad(log_p_answer, list(params.values()))):
            sums[n] += g ** 2
    return {n: s / len(examples) for n, s in sums.items()}


def test_fisher_is_the_mean_squared_per_example_gradient_saved_and_loaded_on_resume(tmp_path, tiny_model_dir,
                                                                                      tokenizer, capfd):
    from transformers import AutoModelForCausalLM

    raw = toy_config(tmp_path, tiny_model_dir, method="full", max_steps=2, checkpoint_every=1,
                     regularization=ewc(examples=3))
    cfg = load_config(data=raw)
    run = train(cfg)
    saved = load_file(str(run / "regularization" / "fisher.safetensors"))
    meta = json.loads((run / "regularization" / "fisher.json").read_text())
    assert (meta["tasks"], meta["examples"], meta["model"]) == (["toy"], 3, tiny_model_dir)

    examples, _ = fisher_examples(cfg, tokenizer)
    train_keys = json.loads((run / "train_keys.json").read_text())["tasks"]["toy"]
    assert len(examples) == 3 and all(ex.content_key in train_keys for ex in examples)  # the train split
    want = per_example_fisher(AutoModelForCausalLM.from_pretrained(tiny_model_dir), examples)
    assert saved.keys() == {n for n in want if n != "lm_head.weight"}  # tied: one tensor
    for n in saved:
        # fp32 sums in another order (tunelab's chunked LM head): equal up to rounding
        torch.testing.assert_close(saved[n], want[n], rtol=1e-4, atol=1e-5 * float(want[n].abs().max()),
                                   msg=lambda m: f"{n}: {m}")
    assert all(float(saved[n].sum()) > 0 for n in saved)
    everything = torch.cat([t.flatten().double() for t in want.values() if t is not want.get("lm_head.weight")])
    assert meta["weights"] == everything.numel() and meta["max"] == pytest.approx(float(everything.max()), rel=1e-4)
    assert meta["mean"] == pytest.approx(float(everything.mean()), rel=1e-4)

    # a saved Fisher of other examples (a data file changed since) is not taken for this run's
    targets = {n: torch.empty(t.shape) for n, t in saved.items()}
    assert load_saved(run, cfg, targets, "cpu", meta["content_keys_sha256"])[0] is not None
    assert load_saved(run, cfg, targets, "cpu", "0" * 64) == (None, None)

    capfd.readouterr()
    before = (run / "regularization" / "fisher.safetensors").stat().st_mtime_ns
    train(load_config(data={**raw, "train": {**raw["train"], "max_steps": 3}}), resume=True)
    err = capfd.readouterr().err
    assert "EWC Fisher loaded from" in err and "EWC Fisher of the starting model" not in err
    assert (run / "regularization" / "fisher.safetensors").stat().st_mtime_ns == before
    sources = [e["fisher"]["source"] for e in events(run) if e.get("event") == "regularization"]
    assert sources == ["computed", "loaded"]


def test_killed_ewc_run_resumes_bit_identically(tmp_path, tiny_model_dir):
    def config(name):
        return toy_config(tmp_path, tiny_model_dir, name=name, max_steps=8, batch_size=4, checkpoint_every=3,
                          lora={"r": 4, "dropout": 0.1}, regularization=ewc(weight=50.0))

    reference = train(load_config(data=config("reference")))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config("run")))
    killed = subprocess.run([sys.executable, KILL_AT, "step", "5", "train", str(path)], capture_output=True,
                            text=True, env=subprocess_env(), timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = tmp_path / "runs" / "run"
    assert (run / "regularization" / "fisher.safetensors").exists()
    train(load_config(data=config("run")), resume=True)
    got, ref = events(run), events(reference)
    assert [e["step"] for e in got if "loss" in e] == list(range(1, 9))
    for key in ("loss", "penalty"):
        assert [e[key] for e in got if "loss" in e] == [e[key] for e in ref if "loss" in e]
    assert next(e for e in got if e.get("event") == "resumed")["checkpoint"] == "step-3"
    a = load_file(str(run / "final" / "adapter_model.safetensors"))
    b = load_file(str(reference / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_refusals_are_one_clear_line(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="kind ewc needs fisher.tasks"):
        load_config(data=toy_config(tmp_path, tiny_model_dir, regularization={"kind": "ewc", "weight": 1.0}))
    with pytest.raises(ConfigError, match="'fisher' applies to kind ewc only"):
        load_config(data=toy_config(tmp_path, tiny_model_dir, regularization={**ewc(), "kind": "l2sp"}))
    fsdp = load_config(data=toy_config(tmp_path, tiny_model_dir, method="full", regularization=ewc(),
                                       distributed={"strategy": "fsdp"}))
    with pytest.raises(ConfigError, match="not supported with train.distributed.strategy=fsdp on several processes"):
        check_regularization(fsdp, world=2)
    check_regularization(fsdp, world=1)  # one process does not shard
    for method in ("ia3", "prompt_tuning", "prefix_tuning"):
        with pytest.raises(ConfigError, match=f"not supported with method {method}: "):
            train(load_config(data=toy_config(tmp_path, tiny_model_dir, method=method, regularization=ewc())))
    with pytest.raises(ConfigError, match="kind ewc needs gradients of the base weights, which qlora"):
        train(load_config(data=toy_config(tmp_path, tiny_model_dir, method="qlora", regularization=ewc())))
    with pytest.raises(ConfigError, match="fisher.tasks: task 'nope': not a RECIPE=PATH"):
        train(load_config(data=toy_config(tmp_path, tiny_model_dir, regularization=ewc(tasks=["nope"]))))
    assert not (tmp_path / "runs").exists()  # refused before any work


@pytest.mark.slow
def test_two_ddp_processes_follow_one_process(tmp_path, tiny_model_dir):
    """2 CPU processes (gloo), batch 4 each: each computes half of the Fisher (all-reduced) and adds
    the same penalty gradient after DDP's average: the curve of one process with batch 8."""
    from test_fsdp import launcher

    def config(name, batch_size):
        return toy_config(tmp_path, tiny_model_dir, name=name, max_steps=4, batch_size=batch_size,
                          regularization=ewc(weight=50.0))

    one = train(load_config(data=config("one", 8)))
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config("ddp", 4)))
    done = subprocess.run([launcher("accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
                           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tunelab.cli", "train",
                           str(path)], env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = tmp_path / "runs" / "ddp"
    for key in ("loss", "penalty"):
        a, b = ([e[key] for e in events(r) if "loss" in e] for r in (one, two))
        assert len(a) == 4 and all(abs(x - y) <= 1e-5 * abs(x) + 1e-9 for x, y in zip(a, b)), (key, a, b)
    f1, f2 = (load_file(str(r / "regularization" / "fisher.safetensors")) for r in (one, two))
    assert all(torch.allclose(f1[k], f2[k], rtol=1e-5, atol=1e-12) for k in f1)


def test_fisher_tasks_resolve_like_forgetting_tasks_and_always_use_the_train_split(tmp_path, tiny_model_dir,
                                                                                    tokenizer):
    from tunelab.train.regularize import fisher_specs
    from train_helpers import toy_records

    old = {"name": "old", "kind": "classification", "source": {"records": toy_records(30, seed=9)},
           "fields": {"text": "text", "label": "label"}, "labels": {0: "negative", 1: "positive"}, "split": "test"}
    raw = toy_config(tmp_path, tiny_model_dir, regularization=ewc(tasks=["old", "toy"], examples=5))
    cfg = load_config(data={**raw, "forgetting": {"tasks": [old]}})
    specs = fisher_specs(cfg)
    assert [s["name"] for s in specs] == ["old", "toy"] and all("split" not in s for s in specs)
    examples, names = fisher_examples(cfg, tokenizer)
    assert names == ["old", "toy"] and len(examples) == 10
    from tunelab.evaluate.harness import load_examples

    data, _, train_split = load_examples({k: v for k, v in old.items() if k != "split"}, tokenizer, "train", None,
                                         ".", cfg.seed)
    assert [ex.content_key for ex in examples[:5]] == [ex.content_key for ex in train_split[:5]]
    assert not {ex.content_key for ex in examples[:5]} & {ex.content_key for ex in data.splits["test"]}
