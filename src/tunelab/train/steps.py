"""One optimizer step: the epoch's plan, its micro-batches, forward/backward, clip, update, log.

One optimizer step = grad_accum micro-batches on each of the processes. The loss of a step is
the sum of token losses over the whole step divided by its number of label tokens, so it is the
same for any split of the step across micro-batches and processes (DDP averages gradients, hence
the world_size factor below).
"""

from __future__ import annotations

import math
import time
from functools import partial

import torch

from tunelab.config.base import UserError
from tunelab.train import checkpoint as ckpt
from tunelab.train.batching import collate, pack_sequences, plan_steps, seq_length, to_sequences
from tunelab.train.distributed import gradient_sync, to_float
from tunelab.train.preference import stored_reference
from tunelab.train.preference_batches import collate_preference, preference_items


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the message says where and what to change.

    Not a ConfigError: the config was valid, the run failed. It is a UserError because the user
    can fix it (the message names the settings to change and the checkpoint to resume from), so
    the CLI prints it as one line and exits 2 (tunelab.cli.errors)."""


def all_reduce(x: torch.Tensor, world: int) -> torch.Tensor:
    """Sum over processes (a no-op with one process)."""
    if world > 1:
        torch.distributed.all_reduce(x)
    return x


def epoch_plan(data, t, architecture: str, seed: int, epoch: int, world: int):
    """(sequences, plan) of one epoch; the same on every process and on every resume. Preference
    objectives: (items, plan), an item a pair or a kto example (train/preference_batches.py)."""
    if t.objective != "sft":
        items = preference_items(data.train_epoch(epoch, seed), t.objective, stored_reference(t))
        # kto: no micro-batch of one, whose KL row would pair an example with its own answer
        return items, plan_steps([it.length for it in items], t.batch_size, t.grad_accum, world,
                                 t.group_by_length, seed, epoch, min_part=2 if t.objective == "kto" else 1)
    seqs = to_sequences(data.train_epoch(epoch, seed), architecture, t.include_prompt_loss)
    if t.packing:
        seqs = pack_sequences(seqs, t.pack_length or max(len(s.input_ids) for s in seqs))
    return seqs, plan_steps([seq_length(s) for s in seqs], t.batch_size, t.grad_accum, world,
                            t.group_by_length, seed, epoch)


def micro_batch(seqs, parts, part: int, pad_id: int, collate_fn=collate):
    """Collate one part of the step. An empty part (the last, short batch has fewer items than
    parts) becomes a stand-in item whose loss is multiplied by zero: every process must run
    forward and backward in every micro-step for DDP to stay in step."""
    if parts[part]:
        return collate_fn([seqs[i] for i in parts[part]], pad_id)
    batch = collate_fn([seqs[next(i for p in parts for i in p)]], pad_id)
    batch.n_examples = batch.real_tokens = batch.padded_tokens = batch.label_tokens = 0
    return batch


def forward_backward(state, batches, n_global: float, metrics: dict | None = None) -> torch.Tensor:
    """Forward and backward over the step's micro-batches; returns this process's loss sum.
    `metrics`: gets each preference metric's [sum, count] over the step (train/preference.py)."""
    t, world = state.cfg.train, state.world
    autocast = state.autocast
    loss_sum_local = torch.zeros((), dtype=torch.float64, device=state.device)
    for m, batch in enumerate(batches):
        last = m == t.grad_accum - 1 or world == 1
        with gradient_sync(state.loss_model, state.accelerator, enabled=last):
            with autocast():
                loss_sum, extra = state.loss_model(**{k: v.to(state.device) for k, v in batch.tensors.items()})
            if not batch.n_examples:  # an empty part of the last, short batch
                loss_sum = loss_sum * 0.0
            elif metrics is not None and isinstance(extra, dict):
                for key, (total, count) in extra.items():  # tensors until the step's end: no sync here
                    metrics.setdefault(key, [0.0, 0.0])
                    metrics[key][0] = metrics[key][0] + total.detach().double()
                    metrics[key][1] += count
            scaled = loss_sum * world / max(n_global, 1.0)
            (state.scaler.scale(scaled) if state.scaler else scaled).backward()
        loss_sum_local += loss_sum.detach().double()
    return loss_sum_local


def train_step(state, seqs, parts) -> dict:
    """Run one optimizer step; returns its numbers (loss, lr, grad norm, tokens, ...)."""
    t, c = state.cfg.train, state.counters
    t0 = time.perf_counter()
    # Preference objectives: a batch's label_tokens is its number of items (pairs, kto examples),
    # so the step's loss is the mean over its items (train/preference_batches.py).
    collate_fn = collate if t.objective == "sft" else partial(collate_preference, **state.pair_layout)
    batches = [micro_batch(seqs, parts, m * state.world + state.rank, state.pad_id, collate_fn)
               for m in range(t.grad_accum)]
    counts = torch.tensor([sum(b.label_tokens for b in batches)], dtype=torch.float64)
    n_global = float(all_reduce(counts.to(state.device), state.world)[0])
    metrics = {}
    loss_sum_local = forward_backward(state, batches, n_global, metrics)
    if state.scaler:
        state.scaler.unscale_(state.optimizer)
    # L2-SP / EWC: the penalty's gradient joins the (averaged) data gradient before clipping
    penalty = state.regularizer.add_gradient() if state.regularizer is not None else None
    grad_norm = to_float(torch.nn.utils.clip_grad_norm_(state.trainable, t.max_grad_norm or float("inf")))
    stats = all_reduce(torch.tensor([float(loss_sum_local), sum(b.real_tokens for b in batches),
                                     sum(b.padded_tokens for b in batches), sum(b.n_examples for b in batches),
                                     1.0 if state.stop.reason else 0.0], dtype=torch.float64, device=state.device),
                       state.world)
    loss = float(stats[0]) / max(n_global, 1.0)
    if not math.isfinite(loss) or (state.scaler is None and not math.isfinite(grad_norm)):
        c.status = "diverged"
        raise TrainingDiverged(
            f"training diverged: the loss is {loss} at step {c.step + 1}. Last good checkpoint: "
            f"{ckpt.latest_checkpoint(state.ckpt_dir) or 'none'}. Lower train.lr, enable train.max_grad_norm, "
            f"or use train.precision=fp32 or bf16; resume from the checkpoint with --resume after fixing the config.")
    if state.scaler:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    lr = state.scheduler.get_last_lr()[0]
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    c.step += 1
    c.step_in_epoch += 1
    c.train_tokens += int(stats[1])
    dt = time.perf_counter() - t0
    extra = {"penalty": penalty} if penalty is not None else {}
    if t.objective != "sft":
        extra.update(step_metrics(metrics, state.world, state.device))
    return {"step": c.step, "epoch": c.epoch, "loss": loss, **extra, "lr": lr, "grad_norm": grad_norm,
            "tokens_per_s": float(stats[1]) / dt, "real_tokens": int(stats[1]),
            "padding_tokens": int(stats[2] - stats[1]), "label_tokens": int(n_global), "examples": int(stats[3]),
            "step_s": dt, "elapsed_s": time.perf_counter() - state.started, "stop_requested": bool(stats[4] > 0)}


def step_metrics(metrics: dict, world: int, device) -> dict:
    """The step's preference metrics (rewards, margins, ...): each a mean over the items of all
    processes that have it (kto's rewards/chosen: over the desirable examples only)."""
    from tunelab.train.preference import METRICS

    keys = [k for k in METRICS if k in metrics] if world == 1 else list(METRICS)
    if not keys:
        return {}
    pairs = [metrics.get(k, [0.0, 0.0]) for k in keys]
    sums = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device) for pair in pairs for v in pair])
    sums = all_reduce(sums, world).reshape(-1, 2)
    return {k: float(total / count) for k, (total, count) in zip(keys, sums.tolist()) if count > 0}
