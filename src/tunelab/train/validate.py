"""Validation: loss on each task's validation split, and optional generation metrics.

Loss: each process takes every world_size-th example; sums are all-reduced, so the numbers are
the same for any number of processes. Generation: greedy decoding of a validation subset, scored
with tunelab.metrics (accuracy after label extraction for classification tasks, token F1 and
exact match otherwise); every process decodes the same subset, so early-stopping decisions agree.
"""

from __future__ import annotations

import torch

from tunelab.train.batching import collate, seq_length


@torch.no_grad()
def validation_loss(loss_model, val_sets: dict, batch_size: int, pad_id: int, rank: int, world: int,
                    device, autocast, reduce) -> dict:
    """val_sets: task -> list[Sequence]. Returns {"val_loss": ..., "val_loss/<task>": ...}."""
    loss_model.eval()
    out, total_sum, total_n = {}, 0.0, 0
    for task, seqs in val_sets.items():
        mine = sorted(seqs[rank::world], key=seq_length)
        sums = torch.zeros(2, dtype=torch.float64, device=device)
        for s in range(0, len(mine), batch_size):
            batch = collate(mine[s:s + batch_size], pad_id)
            with autocast():
                loss_sum, n = loss_model(**{k: v.to(device) for k, v in batch.tensors.items()})
            sums += torch.stack([loss_sum.double(), n.double()])
        sums = reduce(sums)
        if sums[1] > 0:
            out[f"val_loss/{task}"] = float(sums[0] / sums[1])
        total_sum += float(sums[0])
        total_n += int(sums[1])
    out["val_loss"] = total_sum / total_n if total_n else float("nan")
    out["val_tokens"] = total_n
    loss_model.train()
    return out


@torch.no_grad()
def generate_greedy(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 16,
                    device="cpu", autocast=None) -> list[str]:
    """Greedy continuations of token-id prompts (left-padded batches), decoded without special tokens."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id
    texts = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]):] = 1
        with autocast():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad)
        new = out[:, width:] if not model.config.is_encoder_decoder else out
        for r, i in enumerate(idx):
            texts[i] = tokenizer.decode(new[r], skip_special_tokens=True).strip()
    model.train(was_training)
    return texts


def generation_metrics(model, tokenizer, tasks: dict, limit: int, max_new_tokens: int, batch_size: int,
                       device, autocast) -> dict:
    """tasks: name -> (examples, labels or None). Returns {"val_accuracy/<task>": ..., ...}."""
    out = {}
    for name, (examples, labels) in tasks.items():
        subset = examples[:limit]
        if not subset:
            continue
        preds = generate_greedy(model, tokenizer, [list(e.prompt_ids) for e in subset], max_new_tokens,
                                batch_size, device, autocast)
        if labels:
            from tunelab.metrics.classification import classification_report
            from tunelab.metrics.labels import extract_label

            predicted = [extract_label(p, labels) for p in preds]
            report = classification_report([e.label for e in subset], predicted, labels=labels)
            out[f"val_accuracy/{name}"] = float(report["accuracy"])
            out[f"val_unmapped/{name}"] = int(report["n_unmapped"])
        else:
            from tunelab.metrics.exact_match import exact_match
            from tunelab.metrics.token_f1 import token_f1

            refs = [list(e.references) or [e.target_text] for e in subset]
            out[f"val_token_f1/{name}"] = sum(token_f1(p, r) for p, r in zip(preds, refs)) / len(subset)
            out[f"val_exact_match/{name}"] = sum(exact_match(p, r) for p, r in zip(preds, refs)) / len(subset)
    # Task-averaged headline numbers, for early stopping across a mixture.
    for metric in ("val_accuracy", "val_token_f1"):
        values = [v for k, v in out.items() if k.startswith(metric + "/")]
        if values:
            out[metric] = sum(values) / len(values)
    return out
