"""Regularised fine-tuning against forgetting: L2-SP and EWC (`train.regularization`).

    penalty = (weight / 2) * sum_i c_i * (theta_i - theta0_i)^2      c_i = 1 (L2-SP) or F_i (EWC)

theta0 is what the run starts from (the base model, or the previous stage's model); F is the
diagonal empirical Fisher of that starting model on the train split of earlier tasks: the mean
over examples of the squared gradient of log p(answer | prompt), one example per backward.

Written here rather than taken from a library: TRL and PEFT have neither L2-SP (Li et al. 2018)
nor EWC (Kirkpatrick et al. 2017). The loss logged as `loss` stays the data loss; the penalty's
gradient is added in closed form to .grad after the step's backward (after GradScaler.unscale_,
before clipping), without an autograd graph:
- full / freeze, and every other trained tensor (modules_to_save, trained biases):
  grad += weight * c * (theta - theta0), against an fp32 copy of the starting values;
- LoRA (rslora, qlora): on the adapter's weight change dW = s * B @ A (peft initialises B = 0, so
  dW starts at 0), c the Fisher of the base weight: dB = weight * s * (c * dW) @ A^T and
  dA = weight * s * B^T @ (c * dW), in the (out, in) layout (fan_in_fan_out transposes c);
- DoRA: the change is merged weight - W = m / ||W + dW||_row * (W + dW) - W, through autograd
  (one small graph per module, the norm not detached: this is the penalty's true gradient).
IA3 and prompt/prefix tuning are refused (check_regularization). docs/training.md has the rest.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tunelab.config.base import ConfigError
from tunelab.models.tuners import get_method

FOLDER = "regularization"  # <run>/regularization/fisher.safetensors + fisher.json
PROGRESS_EVERY_S = 5.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def active(cfg) -> bool:
    r = cfg.train.regularization
    return r is not None and r.weight > 0


def check_regularization(cfg, world: int) -> None:
    """Refusals before any work: methods without a weight change, EWC on a quantised base, FSDP,
    fisher.tasks that do not expand."""
    if not active(cfg):
        return
    t, r = cfg.train, cfg.train.regularization
    method = get_method(t.method)  # which methods refuse, and why: tunelab.models.tuners
    if method.regularization:
        raise ConfigError(f"train.regularization: not supported with method {t.method}: {method.regularization} "
                          f"(use lora, dora, full or freeze)")
    if method.quantization is not None and r.kind == "ewc":
        raise ConfigError("train.regularization: kind ewc needs gradients of the base weights, which qlora holds "
                          "in 4/8 bits: use kind l2sp, or method lora")
    if t.distributed.strategy == "fsdp" and world > 1:
        raise ConfigError("train.regularization: not supported with train.distributed.strategy=fsdp on several "
                          "processes (the starting weights, the Fisher and LoRA's B @ A would have to be sharded "
                          "like the parameters): use strategy ddp")
    if r.kind == "ewc":
        fisher_specs(cfg)


# ---------------------------------------------------------------- what the penalty acts on


@dataclass
class Dense:
    """A trained tensor against its fp32 starting value."""
    param: torch.Tensor
    theta0: torch.Tensor
    coeff: torch.Tensor | None  # None: 1 (L2-SP)


@dataclass
class Adapted:
    """One LoRA / DoRA module: the penalty is on its weight change."""
    module: object
    adapter: str
    coeff: torch.Tensor | None  # (out, in) layout; None: 1
    dora: bool = False


@dataclass
class Regularizer:
    weight: float
    kind: str
    dense: list = field(default_factory=list)
    adapted: list = field(default_factory=list)
    fisher: dict | None = None  # EWC: {tensor name: F} as saved (LoRA: of the base weights)
    fisher_source: dict | None = None  # how the Fisher was obtained (computed / loaded, seconds)

    def add_gradient(self) -> float:
        """Add the penalty's gradient to .grad; return the penalty (weight/2 * sum c * change^2)."""
        total = 0.0  # summed on the device, read once
        for d in self.dense:
            total += dense_term(d, self.weight)
        for a in self.adapted:
            total += (dora_term if a.dora else lora_term)(a, self.weight)
        return float(total) * self.weight / 2


def accumulate(param: torch.Tensor, grad: torch.Tensor) -> None:
    if param.grad is None:
        param.grad = grad.to(param.dtype)
    else:
        param.grad.add_(grad.to(param.grad.dtype))


def dense_term(d: Dense, weight: float) -> torch.Tensor:
    change = d.param.detach().float() - d.theta0
    weighted = change if d.coeff is None else change * d.coeff
    value = (weighted * change).sum(dtype=torch.float64)
    accumulate(d.param, weighted.mul_(weight))
    return value


def lora_parts(a: Adapted):
    m = a.module
    return m.lora_A[a.adapter].weight, m.lora_B[a.adapter].weight, float(m.scaling[a.adapter])


def lora_term(a: Adapted, weight: float) -> torch.Tensor:
    A, B, s = lora_parts(a)
    Af, Bf = A.detach().float(), B.detach().float()
    change = (Bf @ Af).mul_(s)  # (out, in)
    weighted = change if a.coeff is None else change * a.coeff
    accumulate(B, (weighted @ Af.T).mul_(weight * s))
    accumulate(A, (Bf.T @ weighted).mul_(weight * s))
    return (weighted * change).sum(dtype=torch.float64)


def base_weight_out_in(module) -> torch.Tensor:
    from peft.utils.other import transpose

    return transpose(module.get_base_layer().weight, module.fan_in_fan_out).detach().float()


def dora_change(module, adapter: str, A, B, magnitude) -> torch.Tensor:
    """DoRA's merged weight minus the base weight, (out, in), differentiable in A, B, magnitude."""
    W = base_weight_out_in(module)
    merged_direction = W + float(module.scaling[adapter]) * (B.float() @ A.float())
    norm = torch.linalg.norm(merged_direction, dim=1, keepdim=True)
    return magnitude.float().view(-1, 1) / norm * merged_direction - W


def dora_term(a: Adapted, weight: float) -> torch.Tensor:
    A, B, _ = lora_parts(a)
    magnitude = a.module.lora_magnitude_vector[a.adapter].weight
    with torch.enable_grad():
        leaves = [p.detach().requires_grad_(True) for p in (A, B, magnitude)]
        change = dora_change(a.module, a.adapter, *leaves)
        value = (change.square() if a.coeff is None else change.square() * a.coeff).sum()
        grads = torch.autograd.grad(value, leaves)
    for p, g in zip((A, B, magnitude), grads):
        accumulate(p, g * (weight / 2))  # value is the sum without the 1/2
    return value.detach().double()


# ---------------------------------------------------------------- building it


def lora_modules(model) -> list:
    """(name, module, adapter) of every LoRA-family module; other adapted layer kinds refused."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    from transformers.pytorch_utils import Conv1D

    out = []
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        for adapter in module.active_adapters:
            if adapter not in module.lora_A:
                continue
            base = module.get_base_layer()
            if not isinstance(base, (torch.nn.Linear, Conv1D)) or adapter not in getattr(module, "scaling", {}):
                raise ConfigError(f"train.regularization: LoRA on {type(base).__name__} layers ({name}) is not "
                                  f"supported, only on linear layers: name them in train.lora.target_modules")
            out.append((name, module, adapter))
    return out


def adapter_param_ids(mods) -> set[int]:
    ids = set()
    for _, m, adapter in mods:
        ids.update(id(p) for p in m.lora_A[adapter].parameters())
        ids.update(id(p) for p in m.lora_B[adapter].parameters())
        if adapter in getattr(m, "lora_magnitude_vector", {}):
            ids.update(id(p) for p in m.lora_magnitude_vector[adapter].parameters())
    return ids


def penalised(model) -> tuple[list, dict]:
    """(LoRA modules, {name: tensor} of the dense trained tensors) the penalty acts on."""
    mods = lora_modules(model)
    skip = adapter_param_ids(mods)
    dense = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in skip}
    return mods, dense


def fisher_targets(model) -> dict:
    """{name: tensor} whose Fisher EWC needs: each adapted module's base weight, every dense tensor."""
    mods, dense = penalised(model)
    names = {id(p): n for n, p in model.named_parameters()}
    bases = {names[id(m.get_base_layer().weight)]: m.get_base_layer().weight for _, m, _ in mods}
    return {**bases, **dense}


def build_regularizer(cfg, model, loss_fn, tokenizer, run: Path, resume: bool, accelerator, autocast):
    """The Regularizer of a run (None when off): theta0 and, for EWC, the Fisher of the starting model.
    Called before the model is wrapped for DDP and before a checkpoint is restored."""
    if not active(cfg):
        return None
    r = cfg.train.regularization
    if getattr(model, "hf_quantizer", None) is None:  # accelerate would move it anyway; the Fisher runs there
        model.to(accelerator.device)
    fisher, source = None, None
    if r.kind == "ewc":
        fisher, source = obtain_fisher(cfg, model, loss_fn, tokenizer, run, resume, accelerator, autocast)
    return make_regularizer(model, r.weight, r.kind, fisher, source)


def make_regularizer(model, weight: float, kind: str, fisher: dict | None = None, source: dict | None = None):
    """theta0 = the model's weights now; `fisher` ({fisher_targets name: F}) for EWC, None for L2-SP."""
    from peft.utils.other import transpose

    mods, dense = penalised(model)
    names = {id(p): n for n, p in model.named_parameters()}
    reg = Regularizer(weight=weight, kind=kind, fisher=fisher, fisher_source=source)
    for name, p in dense.items():
        reg.dense.append(Dense(p, p.detach().to(torch.float32, copy=True), fisher[name] if fisher else None))
    for _, m, adapter in mods:
        coeff = transpose(fisher[names[id(m.get_base_layer().weight)]], m.fan_in_fan_out).contiguous() \
            if fisher else None
        reg.adapted.append(Adapted(m, adapter, coeff, dora=adapter in getattr(m, "lora_magnitude_vector", {})))
    return reg


# ---------------------------------------------------------------- the Fisher


def fisher_specs(cfg) -> list[dict]:
    """fisher.tasks as eval task specs; a bare name may also be a dict entry of forgetting.tasks."""
    from tunelab.evaluate.harness import expand_tasks, training_data

    own = training_data(cfg)["data_tasks"]
    section = getattr(cfg, "forgetting", None)
    named = {t["name"]: t for t in (getattr(section, "tasks", None) or [])
             if isinstance(t, dict) and "name" in t and ("kind" in t or "recipe" in t)}
    try:
        specs = expand_tasks(cfg.train.regularization.fisher.tasks, getattr(cfg, "config_dir", "."), {**named, **own})
    except ConfigError as exc:
        raise ConfigError(f"train.regularization.fisher.tasks: {exc}") from None
    return [{k: v for k, v in spec.items() if k != "split"} for spec in specs]  # always the train split


def fisher_examples(cfg, tokenizer) -> tuple[list, list[str]]:
    """The first fisher.examples of each task's train split, built as training builds them."""
    from tunelab.evaluate.harness import load_examples, own_task, training_data

    data = training_data(cfg)
    out, names = [], []
    for spec in fisher_specs(cfg):
        settings = data["data_settings"] if own_task(spec, data["data_tasks"]) else None
        _, _, examples = load_examples(spec, tokenizer, "train", cfg.train.regularization.fisher.examples,
                                       getattr(cfg, "config_dir", "."), data["seed"], data["data_split"],
                                       settings=settings, chat_template=data["chat_template"])
        out += examples
        names.append(spec["name"])
    return out, names


def compute_fisher(model, loss_fn, targets: dict, seqs: list, pad_id: int, autocast, accelerator) -> dict:
    """mean over seqs of (d log p(answer | prompt) / d theta)^2, one example per backward, fp32 sums.
    Dropout off (eval mode) and the RNG untouched. Each process takes every world-th example and the
    sums are all-reduced: every process ends with the same tensors."""
    from tunelab.train.batching import collate

    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    sums = {n: torch.zeros(p.shape, dtype=torch.float32, device=device) for n, p in targets.items()}
    flags = {n: p.requires_grad for n, p in targets.items()}
    params = list(targets.values())
    was_training, t0, shown = model.training, time.perf_counter(), time.perf_counter()
    model.eval()
    try:
        for p in params:
            p.requires_grad_(True)  # frozen LoRA base weights too, for this pass only
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for i in range(rank, len(seqs), world):
                batch = collate([seqs[i]], pad_id)
                with autocast():
                    loss_sum, _ = loss_fn(**{k: v.to(device) for k, v in batch.tensors.items()})
                grads = torch.autograd.grad(loss_sum, params, allow_unused=True)
                for s, g in zip(sums.values(), grads):
                    if g is not None:
                        s.add_(g.float().square())
                if accelerator.is_main_process and time.perf_counter() - shown > PROGRESS_EVERY_S:
                    shown = time.perf_counter()
                    say(f"tunelab: EWC Fisher: {i + 1}/{len(seqs)} examples, {shown - t0:.0f} s")
    finally:
        for (n, p) in targets.items():
            p.requires_grad_(flags[n])
        model.train(was_training)
    for s in sums.values():
        if world > 1:
            torch.distributed.all_reduce(s)
        s.div_(len(seqs))
    return sums


def keys_hash(examples) -> str:
    return hashlib.sha256("\n".join(sorted(ex.content_key for ex in examples)).encode()).hexdigest()


def load_saved(run: Path, cfg, targets: dict, device, digest: str) -> tuple[dict | None, dict | None]:
    """The run's saved Fisher when it fits (same tasks, the same examples by content, tensor names
    and shapes): a data file changed since the first start is not met with a stale Fisher."""
    from safetensors.torch import load_file

    meta_file, tensor_file = run / FOLDER / "fisher.json", run / FOLDER / "fisher.safetensors"
    if not (meta_file.exists() and tensor_file.exists()):
        return None, None
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    f = cfg.train.regularization.fisher
    try:
        tensors = load_file(str(tensor_file), device=str(device))
    except Exception as exc:  # noqa: BLE001 - a damaged file is recomputed, with the reason
        say(f"tunelab: {tensor_file} cannot be read ({exc}); computing the Fisher again")
        return None, None
    fits = meta.get("tasks_config") == json.loads(json.dumps(f.tasks)) and meta.get("examples_per_task") == f.examples \
        and meta.get("content_keys_sha256") == digest \
        and tensors.keys() == targets.keys() and all(tensors[n].shape == p.shape for n, p in targets.items())
    if not fits:
        say(f"tunelab: {tensor_file} does not fit this run's model or fisher settings; computing the Fisher again")
        return None, None
    return tensors, meta


def obtain_fisher(cfg, model, loss_fn, tokenizer, run: Path, resume: bool, accelerator, autocast):
    """The saved Fisher of a resumed run (so every resume uses the same one), else computed now."""
    from tunelab.train.batching import to_sequences

    targets = fisher_targets(model)
    examples, names = fisher_examples(cfg, tokenizer)  # cheap (no model): also what a saved Fisher must match
    digest = keys_hash(examples)
    tensors, meta = load_saved(run, cfg, targets, accelerator.device, digest) \
        if resume and accelerator.is_main_process else (None, None)
    ok = [meta is not None]
    if accelerator.num_processes > 1:  # the main process decides; every process then loads it
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(ok, from_process=0)
        if ok[0] and not accelerator.is_main_process:
            tensors, meta = load_saved(run, cfg, targets, accelerator.device, digest)
            if tensors is None:
                raise ConfigError(f"process {accelerator.process_index} cannot read {run / FOLDER}: the run folder "
                                  f"must be shared by every process (as for checkpoints)")
    if ok[0]:
        if accelerator.is_main_process:
            say(f"tunelab: EWC Fisher loaded from {run / FOLDER / 'fisher.safetensors'} "
                f"({meta['examples']} examples of {', '.join(meta['tasks'])}; computed in {meta['seconds']:.1f} s)")
        return tensors, {"source": "loaded", **meta}
    t0 = time.perf_counter()
    seqs = to_sequences(examples, loss_fn.architecture, include_prompt_loss=False)
    if accelerator.is_main_process:
        say(f"tunelab: EWC Fisher of the starting model over {len(seqs)} train examples of {', '.join(names)}")
    fisher = compute_fisher(model, loss_fn, targets, seqs, tokenizer.pad_token_id, autocast, accelerator)
    meta = {"tasks": names, "tasks_config": json.loads(json.dumps(cfg.train.regularization.fisher.tasks)),
            "examples_per_task": cfg.train.regularization.fisher.examples, "examples": len(seqs),
            "content_keys_sha256": digest, "model": cfg.model.name, "method": cfg.train.method,
            "tensors": len(fisher), "seconds": round(time.perf_counter() - t0, 3), **fisher_scale(fisher)}
    if accelerator.is_main_process:
        hint = f": a weight of about {1 / meta['mean']:.3g} makes EWC pull as hard on average as L2-SP at 1" \
            if meta["mean"] > 0 else ""
        say(f"tunelab: EWC Fisher: mean {meta['mean']:.3g}, largest {meta['max']:.3g} over {meta['weights']:,} "
            f"weights{hint}")
    return fisher, {"source": "computed", **meta}


def fisher_scale(fisher: dict) -> dict:
    """The Fisher's size, to choose λ by: its mean and largest value over all weights. EWC at weight
    λ pulls with λ·F where L2-SP pulls with λ, so λ_ewc ≈ λ_l2sp / mean F is as strong on average
    (and far stronger on the weights the earlier tasks need most)."""
    count = sum(f.numel() for f in fisher.values())
    total = sum(float(f.double().sum()) for f in fisher.values())
    return {"weights": count, "mean": total / max(count, 1), "max": max((float(f.max()) for f in fisher.values()),
                                                                        default=0.0)}


def save_fisher(reg: Regularizer | None, run: Path) -> None:
    """Write a freshly computed Fisher with the run (main process, once the run folder exists)."""
    if reg is None or not reg.fisher_source or reg.fisher_source["source"] != "computed":
        return
    from safetensors.torch import save

    from tunelab.files import write_bytes, write_json

    tensors = {n: c.detach().cpu().contiguous() for n, c in reg.fisher.items()}
    write_bytes(run / FOLDER / "fisher.safetensors", save(tensors))
    write_json(run / FOLDER / "fisher.json", {k: v for k, v in reg.fisher_source.items() if k != "source"})
