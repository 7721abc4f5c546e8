"""Validation: loss on each task's validation split, generation metrics, early stopping.

Loss: each process takes every world_size-th example; sums are all-reduced, so the numbers are
the same for any number of processes (and every process runs as many batches, as FSDP needs).
Generation metrics come from the evaluation engine (tunelab.evaluate.engine) with the task's own metrics and generation settings: the same numbers
`tunelab eval` gives for the same model, task and split (under the training precision; with
fp32 training they are identical). Under DDP the processes share the generation batches and
gather the rows; under FSDP every process runs every batch (each forward gathers parameters from
all of them). Either way every process ends with the same numbers, so early-stopping decisions
agree. The per-example rows of the latest validation are in <run>/validation/.
"""

from __future__ import annotations

import math

import torch

from tunelab.config.base import ConfigError
from tunelab.signals import check
from tunelab.train.batching import collate, seq_length
from tunelab.train.distributed import is_sharded, root_gathered
from tunelab.train.steps import all_reduce


@torch.no_grad()
def validation_loss(state) -> dict:
    """{"val_loss": ..., "val_loss/<task>": ..., "val_tokens": n} over every validation split."""
    t = state.cfg.train
    state.loss_model.eval()
    out, total_sum, total_n = {}, 0.0, 0
    for task, seqs in state.val_sets.items():
        mine = sorted(seqs[state.rank::state.world], key=seq_length)
        sums = torch.zeros(2, dtype=torch.float64, device=state.device)
        # Every process runs the same number of batches: under FSDP each forward gathers parameters
        # from all processes. A process with fewer examples runs a stand-in batch that counts zero.
        most = -(-len(seqs) // state.world)
        for s in range(0, most, t.eval_batch_size):
            check()  # a signal abandons validation between batches (training stops with a checkpoint)
            part = mine[s:s + t.eval_batch_size]
            batch = collate(part or seqs[:1], state.pad_id)
            with state.autocast():
                loss_sum, n = state.loss_model(**{k: v.to(state.device) for k, v in batch.tensors.items()})
            if part:
                sums += torch.stack([loss_sum.double(), n.double()])
        sums = all_reduce(sums, state.world)
        if sums[1] > 0:
            out[f"val_loss/{task}"] = float(sums[0] / sums[1])
        total_sum += float(sums[0])
        total_n += int(sums[1])
    out["val_loss"] = total_sum / total_n if total_n else float("nan")
    out["val_tokens"] = total_n
    state.loss_model.train()
    return out


def generation_metrics(state) -> dict:
    """Each task's metrics on (a subset of) its validation split, through the evaluation engine."""
    from tunelab.config.evaluate import GenerationConfig
    from tunelab.evaluate.engine import LoadedModel

    g = state.cfg.train.eval_generation
    model = state.accelerator.unwrap_model(state.loss_model).model
    data_tasks = {task.name: task.model_dump(exclude_none=True) for task in state.cfg.data.tasks}
    generation = GenerationConfig(max_new_tokens=g.max_new_tokens) if g.max_new_tokens is not None else None
    lm = LoadedModel(model, state.tokenizer)
    model.eval()  # no dropout while scoring: the numbers eval gives for these weights
    try:
        with root_gathered(state.loss_model):
            out = _score_validation(state, lm, data_tasks, generation, g)
    finally:
        model.train()
    return out


def _score_validation(state, lm, data_tasks: dict, generation, g) -> dict:
    from tunelab.evaluate.engine import score_examples
    from tunelab.evaluate.recipes import expand_task
    from tunelab.evaluate.shard import ONE, World
    from tunelab.files import write_jsonl

    # Under DDP each process generates for a share of the batches (gathered: every process gets
    # every row); under FSDP every forward needs every process, so all of them run every batch.
    world = World(state.rank, state.world) if state.world > 1 and not is_sharded(state.loss_model) else ONE
    out = {}
    for name, examples in state.val_examples.items():
        spec = expand_task(name, state.cfg.config_dir, data_tasks)
        task = state.data.tasks[name]
        result, rows = score_examples(lm, spec, examples[: g.limit], split="validation", labels=task.labels,
                                      label_synonyms=getattr(task, "label_synonyms", None), generation=generation,
                                      batch_size=g.batch_size, n_resamples=0, autocast=state.autocast,
                                      verbose=False, chat_template=getattr(task, "chat_template", None),
                                      world=world)
        for metric, entry in result["metrics"].items():
            if isinstance(entry.get("value"), (int, float)):
                out[f"val_{metric}/{name}"] = entry["value"]
        if state.main:
            write_jsonl(state.run / "validation" / f"{name}.examples.jsonl", rows)
    # Task-averaged headline numbers (e.g. val_accuracy), for early stopping across a mixture.
    for metric in sorted({k.split("/")[0] for k in out}):
        values = [v for k, v in out.items() if k.startswith(metric + "/")]
        out[metric] = sum(values) / len(values)
    return out


def improved(state, value: float) -> bool:
    es = state.cfg.train.early_stopping
    best = state.counters.best
    if best is None:
        return True
    delta = es.min_delta if es else 0.0
    mode = es.mode if es else "min"
    return value < best["value"] - delta if mode == "min" else value > best["value"] + delta


def validate(state) -> str | None:
    """Validate, log, track the best step, tell the callback. Returns why training should stop
    ("early_stopped": no improvement for `patience` validations; "stopped": the callback asked), or None."""
    from tunelab.train.checkpoint import save_checkpoint

    t, c = state.cfg.train, state.counters
    if not state.val_sets or c.validated_step == c.step:
        return None
    results = validation_loss(state)
    if t.eval_generation.enabled:
        results.update(generation_metrics(state))
    c.validated_step = c.step
    state.log.write({"step": c.step, "epoch": c.epoch, "split": "validation", **results})
    state.progress.message(f"step {c.step}: " + "  ".join(
        f"{k} {v:.4f}" for k, v in results.items() if isinstance(v, float)))
    state.trackers.log_metrics(results, c.step)
    monitor = t.early_stopping.metric if t.early_stopping else "val_loss"
    value = results.get(monitor)
    if value is None:
        raise ConfigError(f"train.early_stopping.metric: '{monitor}' is not logged; validation logs "
                          f"{', '.join(sorted(results))}")
    # The callback (a search's pruner) sees the same, all-reduced numbers on every process.
    stop = "stopped" if state.on_validation is not None and state.on_validation(c.step, results) else None
    if math.isfinite(value) and improved(state, value):
        c.best = {"step": c.step, "metric": monitor, "value": value}
        c.bad_validations = 0
        if t.keep_best:
            save_checkpoint(state)
        return stop
    c.bad_validations += 1
    if t.early_stopping and c.bad_validations >= t.early_stopping.patience:
        return stop or "early_stopped"
    return stop
