"""The training loop: `train(cfg, resume=False) -> run folder`. Read it top to bottom.

One optimizer step = grad_accum micro-batches on each of the processes. The loss of a step is
the sum of token losses over the whole step divided by its number of label tokens, so it is the
same for any split of the step across micro-batches and processes (DDP averages gradients, hence
the world_size factor below).
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tunelab.config.base import ConfigError
from tunelab.config.load import write_resolved
from tunelab.train import checkpoint as ckpt
from tunelab.train.batching import collate, pack_sequences, plan_steps, seq_length, to_sequences
from tunelab.train.loss import PEFT_FORWARD_METHODS, CompletionLoss
from tunelab.train.optim import build_optimizer, build_scheduler
from tunelab.train.progress import Progress
from tunelab.train.run import MetricsLog, environment, peak_rss_mb, prepare_run_dir, run_dir, write_json
from tunelab.train.validate import generation_metrics, validation_loss


class TrainingDiverged(ConfigError):
    """The loss became NaN or infinite; the message says where and what to change."""


HALF_WEIGHT_METHODS = ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def native_bf16(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    return bool(cpu and (getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                         or getattr(cpu, "_is_amx_tile_supported", lambda: False)()))


def resolve_precision(precision: str, device_type: str) -> str:
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device_type) else "fp32"


def build_model(cfg, precision: str):
    """Load the base model, attach the method, return (model, tokenizer, architecture)."""
    from tunelab.models.load import load_model
    from tunelab.models.resolver import resolve_model
    from tunelab.models.tuners import apply_method, count_parameters

    t = cfg.train
    dtype, quant = None, None
    if t.method == "qlora":
        from tunelab.models.tuners.qlora import quantization_config

        quant = quantization_config(t)
    elif t.half_frozen_weights and t.method in HALF_WEIGHT_METHODS and precision != "fp32" \
            and cfg.model.dtype == "float32":
        # The frozen base only ever runs under autocast: store it in that dtype once.
        dtype = "bfloat16" if precision == "bf16" else "float16"
    model, tokenizer = load_model(cfg.model, dtype=dtype, quantization_config=quant)
    architecture = "seq2seq" if model.config.is_encoder_decoder else "causal"
    if t.gradient_checkpointing:
        enable_gradient_checkpointing(model, t.gradient_checkpointing_every)
    model = apply_method(model, t, architecture, resolve_model(cfg.model.name))
    if precision != "fp32":
        keep_adapter_inputs_in_autocast_dtype(model)
    for p in model.parameters():  # optimizer state and updates in fp32
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    model.train()
    trainable, total = count_parameters(model)
    return model, tokenizer, architecture, trainable, total


def keep_adapter_inputs_in_autocast_dtype(model) -> None:
    """peft casts each adapter's input to the adapter's dtype (fp32 here) before its matmul; under
    autocast the matmul casts it straight back to bf16/fp16, so the result is the same, but the fp32
    copy is kept for backward: on SmolLM2 LoRA (7 adapted linears a layer) that was ~0.5 GB at
    batch 8 x 256. Switch the cast off (peft's own `cast_input_dtype_enabled` flag)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


def autocast_for(precision: str, device):
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def write_final(model, tokenizer, folder: Path) -> None:
    """The final adapter (PEFT format) or full model (safetensors), plus the tokenizer."""
    tmp = folder.with_name(".tmp-final")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def train(cfg, resume: bool = False, data=None) -> Path:
    """Fine-tune per cfg; returns the run folder. `data`: a PreparedData (default: tunelab.data.prepare)."""
    from accelerate import Accelerator

    t = cfg.train
    seed = t.seed if t.seed is not None else cfg.seed
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    rank, world, device = accelerator.process_index, accelerator.num_processes, accelerator.device
    main = accelerator.is_main_process

    def reduce(x: torch.Tensor) -> torch.Tensor:
        if world > 1:
            torch.distributed.all_reduce(x)
        return x

    if t.packing and (t.method in PEFT_FORWARD_METHODS or cfg.model.architecture == "seq2seq"):
        raise ConfigError(f"train.packing: not supported with method {t.method} or seq2seq models")
    if main:
        prepare_run_dir(cfg, resume)
    accelerator.wait_for_everyone()
    run = run_dir(cfg)
    ckpt_dir = run / "checkpoints"
    log = MetricsLog(run / "metrics.jsonl", enabled=main)
    if main:
        write_resolved(cfg, run)
        write_json(run / "env.json", environment(cfg, seed, world))
        if getattr(cfg, "retention", None) is not None:  # forgetting check: base model scores first
            from tunelab.evaluate import run_retention

            run_retention(cfg, run, "before")

    precision = resolve_precision(t.precision, device.type)
    if precision == "bf16" and not native_bf16(device.type):
        print("tunelab: warning: this processor has no native bf16 (AVX512-BF16/AMX); bf16 autocast is "
              "emulated and usually slower than fp32 here (train.precision=auto picks fp32)", file=sys.stderr)
    set_seed(seed)
    model, tokenizer, architecture, n_trainable, n_total = build_model(cfg, precision)
    if data is None:
        from tunelab.data import prepare

        data = prepare(cfg, tokenizer)
    pad_id = tokenizer.pad_token_id

    def epoch_plan(epoch: int):
        seqs = to_sequences(data.train_epoch(epoch, seed), architecture, t.include_prompt_loss)
        if t.packing:
            seqs = pack_sequences(seqs, t.pack_length or max(len(s.input_ids) for s in seqs))
        return seqs, plan_steps([seq_length(s) for s in seqs], t.batch_size, t.grad_accum, world,
                                t.group_by_length, seed, epoch)

    steps_per_epoch = len(epoch_plan(0)[1])
    if steps_per_epoch == 0:
        raise ConfigError("the training split is empty: nothing to train on")
    total_steps = t.max_steps or steps_per_epoch * t.epochs
    val_sets, gen_sets = {}, {}
    for name, task in data.tasks.items():
        val = list(task.splits.get("validation") or [])[: t.eval_limit]
        if val:
            val_sets[name] = to_sequences(val, architecture, include_prompt_loss=False)
            gen_sets[name] = (val, task.labels if task.kind == "classification" else None)

    loss_model = accelerator.prepare(CompletionLoss(model, architecture, t.method))
    optimizer = build_optimizer(model, t)
    scheduler = build_scheduler(optimizer, t, total_steps)
    autocast = autocast_for(precision, device)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    trainable = [p for p in model.parameters() if p.requires_grad]

    # Where we are; everything here goes into state.json.
    state = {"step": 0, "epoch": 0, "step_in_epoch": 0, "validated_step": -1, "best": None,
             "bad_validations": 0, "train_tokens": 0, "status": "running"}
    if resume:
        if main:
            ckpt.remove_temp_dirs(ckpt_dir)
        latest = ckpt.latest_checkpoint(ckpt_dir)
        if latest is not None:
            state = ckpt.load_checkpoint(latest, model, optimizer, rank)
            scheduler.load_state_dict(state.pop("scheduler"))
            state.pop("total_steps", None)
            if scaler is not None:
                scaler.load_state_dict(state.pop("scaler"))
            state["status"] = "running"
            log.truncate_after(state["step"])
            log.write({"event": "resumed", "step": state["step"], "checkpoint": latest.name})
    if state["step"] == 0 and not state.get("logged_data"):
        log.write({"event": "data", "step": 0, "counts": getattr(data, "report", None)})
        state["logged_data"] = True

    monitor = t.early_stopping.metric if t.early_stopping else "val_loss"
    mode = t.early_stopping.mode if t.early_stopping else "min"
    writer = None
    if t.tensorboard and main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard: install the tensorboard package first") from None
        writer = SummaryWriter(str(run / "tensorboard"))

    saved_step = {"step": None}

    def save() -> None:
        if saved_step["step"] == state["step"]:
            return
        saved_step["step"] = state["step"]
        tmp = ckpt.temp_dir(ckpt_dir, state["step"])
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        ckpt.write_rng(tmp, rank)
        accelerator.wait_for_everyone()
        if main:
            payload = dict(state, scheduler=scheduler.state_dict(), total_steps=total_steps)
            if scaler is not None:
                payload["scaler"] = scaler.state_dict()
            ckpt.write_checkpoint(ckpt_dir, state["step"], model, optimizer, payload)
            best = {state["best"]["step"]} if state["best"] and t.keep_best else set()
            ckpt.prune(ckpt_dir, t.keep_last, best)
        accelerator.wait_for_everyone()

    def validate() -> bool:
        """Run validation, log it, track the best step. Returns True when early stopping says stop."""
        if not val_sets or state["validated_step"] == state["step"]:
            return False
        results = validation_loss(loss_model, val_sets, t.eval_batch_size, pad_id, rank, world, device,
                                  autocast, reduce)
        if t.eval_generation.enabled:
            g = t.eval_generation
            results.update(generation_metrics(accelerator.unwrap_model(loss_model).model, tokenizer, gen_sets,
                                              g.limit, g.max_new_tokens, g.batch_size, device, autocast))
        state["validated_step"] = state["step"]
        log.write({"step": state["step"], "epoch": state["epoch"], "split": "validation", **results})
        progress.message(f"step {state['step']}: " + "  ".join(
            f"{k} {v:.4f}" for k, v in results.items() if isinstance(v, float)))
        if writer:
            for k, v in results.items():
                writer.add_scalar(k, v, state["step"])
        value = results.get(monitor)
        if value is None:
            raise ConfigError(f"train.early_stopping.metric: '{monitor}' is not logged; validation logs "
                              f"{', '.join(sorted(results))}")
        best = state["best"]
        improved = best is None or (value < best["value"] - (t.early_stopping.min_delta if t.early_stopping else 0)
                                    if mode == "min" else
                                    value > best["value"] + (t.early_stopping.min_delta if t.early_stopping else 0))
        if improved:
            state["best"] = {"step": state["step"], "metric": monitor, "value": value}
            state["bad_validations"] = 0
            if t.keep_best:
                save()
            return False
        state["bad_validations"] += 1
        return bool(t.early_stopping and state["bad_validations"] >= t.early_stopping.patience)

    stop_requested = {"signal": None}

    def on_signal(signum, frame):
        stop_requested["signal"] = signal.Signals(signum).name

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    progress = Progress(total_steps, state["step"], t.progress, enabled=main)
    started = time.perf_counter()
    try:
        if t.eval_at_start and state["step"] == 0:
            validate()
        while state["step"] < total_steps and state["status"] == "running":
            seqs, plan = epoch_plan(state["epoch"])
            for parts in plan[state["step_in_epoch"]:]:
                t0 = time.perf_counter()
                batches = [micro_batch(seqs, parts, m * world + rank, pad_id) for m in range(t.grad_accum)]
                counts = torch.tensor([sum(b.label_tokens for b in batches)], dtype=torch.float64)
                n_global = float(reduce(counts.to(device))[0])
                loss_sum_local = torch.zeros((), dtype=torch.float64, device=device)
                for m, batch in enumerate(batches):
                    sync = contextlib.nullcontext() if m == t.grad_accum - 1 or world == 1 \
                        else accelerator.no_sync(loss_model)
                    with sync:
                        with autocast():
                            loss_sum, _ = loss_model(**{k: v.to(device) for k, v in batch.tensors.items()})
                        if not batch.n_examples:  # an empty part of the last, short batch
                            loss_sum = loss_sum * 0.0
                        scaled = loss_sum * world / max(n_global, 1.0)
                        (scaler.scale(scaled) if scaler else scaled).backward()
                    loss_sum_local += loss_sum.detach().double()
                if scaler:
                    scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, t.max_grad_norm or float("inf"))
                real = sum(b.real_tokens for b in batches)
                padded = sum(b.padded_tokens for b in batches)
                stats = reduce(torch.tensor([float(loss_sum_local), real, padded,
                                             sum(b.n_examples for b in batches),
                                             1.0 if stop_requested["signal"] else 0.0],
                                            dtype=torch.float64, device=device))
                loss = float(stats[0]) / max(n_global, 1.0)
                if not math.isfinite(loss) or (scaler is None and not math.isfinite(float(grad_norm))):
                    last = ckpt.latest_checkpoint(ckpt_dir)
                    state["status"] = "diverged"
                    raise TrainingDiverged(
                        f"training diverged: the loss is {loss} at step {state['step'] + 1}. Last good checkpoint: "
                        f"{last or 'none'}. Lower train.lr, enable train.max_grad_norm, or use train.precision=fp32"
                        f" or bf16; resume from the checkpoint with --resume after fixing the config.")
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                lr = scheduler.get_last_lr()[0]
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                state["step_in_epoch"] += 1
                state["train_tokens"] += int(stats[1])
                dt = time.perf_counter() - t0
                tokens_per_s = float(stats[1]) / dt
                if state["step"] % t.log_every == 0 or state["step"] == total_steps:
                    event = {"step": state["step"], "epoch": state["epoch"], "loss": loss, "lr": lr,
                             "grad_norm": float(grad_norm), "tokens_per_s": tokens_per_s,
                             "real_tokens": int(stats[1]), "padding_tokens": int(stats[2] - stats[1]),
                             "label_tokens": int(n_global), "examples": int(stats[3]), "step_s": dt,
                             "elapsed_s": time.perf_counter() - started}
                    log.write(event)
                    if writer:
                        for k in ("loss", "lr", "grad_norm", "tokens_per_s"):
                            writer.add_scalar(f"train/{k}", event[k], state["step"])
                progress.update(state["step"], loss, tokens_per_s)
                stop = t.eval_every is not None and state["step"] % t.eval_every == 0 and validate()
                if t.checkpoint_every and state["step"] % t.checkpoint_every == 0:
                    save()
                if stats[4] > 0:
                    state["status"] = "interrupted"
                    progress.message(f"{stop_requested['signal'] or 'signal'}: checkpoint at step "
                                     f"{state['step']}; continue with --resume")
                    break
                if stop:
                    state["status"] = "early_stopped"
                    break
                if state["step"] >= total_steps:
                    break
            else:  # the epoch ran to its end
                state["epoch"] += 1
                state["step_in_epoch"] = 0
                if validate():
                    state["status"] = "early_stopped"
        if state["status"] == "running":
            state["status"] = "completed"
            validate()
        save()
        if main and state["status"] in ("completed", "early_stopped"):
            write_final(accelerator.unwrap_model(loss_model).model, tokenizer, run / "final")
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        progress.close()
        if writer:
            writer.close()
        if main:
            write_json(run / "summary.json", {
                "status": state["status"], "method": t.method, "base_model": cfg.model.name, "precision": precision,
                "architecture": architecture, "steps": state["step"], "total_steps": total_steps,
                "epochs_completed": state["epoch"], "wall_s": round(time.perf_counter() - started, 3),
                "train_tokens": state["train_tokens"], "trainable_params": n_trainable, "total_params": n_total,
                "peak_rss_mb": round(peak_rss_mb(), 1), "best": state["best"],
                "best_val_loss": state["best"]["value"] if state["best"] and state["best"]["metric"] == "val_loss"
                else None,
                "best_checkpoint": f"checkpoints/step-{state['best']['step']}" if state["best"] else None,
                "processes": world, "data_counts": getattr(data, "report", None),
            })
        accelerator.wait_for_everyone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if main and getattr(cfg, "retention", None) is not None and (run / "final").exists():
        from tunelab.evaluate import run_retention

        run_retention(cfg, run, "after")  # scores final/ and writes retention/forgetting.json
    return run


def enable_gradient_checkpointing(model, every_n_layers: int) -> None:
    """Recompute the activations of every N-th decoder layer in backward instead of keeping them."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs, every_n_layers=every_n_layers)
    elif every_n_layers == 1:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise ConfigError("train.gradient_checkpointing_every > 1 needs transformers >= 5")
    model.enable_input_require_grads()


def micro_batch(seqs, parts, part: int, pad_id: int):
    """Collate one part of the step. An empty part (the last, short batch has fewer items than
    parts) becomes a stand-in item whose loss is multiplied by zero: every process must run
    forward and backward in every micro-step for DDP to stay in step."""
    if parts[part]:
        return collate([seqs[i] for i in parts[part]], pad_id)
    batch = collate([seqs[next(i for p in parts for i in p)]], pad_id)
    batch.n_examples = batch.real_tokens = batch.padded_tokens = batch.label_tokens = 0
    return batch
