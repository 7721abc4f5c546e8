"""Score one model on a fixed set of tokenised examples per task: the cells of R[stage][task].

The same `Example`s (from tunelab.data.prepare, so byte-identical prompts) are scored after
every stage. Two numbers per task:
  - loss: mean cross-entropy per answer token (nats; lower is better), the smooth signal;
  - score: the task's main generation metric from greedy answers (higher is better):
    classification -> accuracy of the extracted label, summarization / instruction / chat /
    translation -> ROUGE-L F1, everything else (qa, completion, multiple choice) -> exact match.
"""

from __future__ import annotations

import contextlib
import math

import torch

GENERATION_METRIC = {
    "classification": "accuracy",
    "summarization": "rougeL",
    "instruction": "rougeL",
    "chat": "rougeL",
    "translation": "rougeL",
}


def metric_name(kind: str) -> str:
    return GENERATION_METRIC.get(kind, "exact_match")


def answer_tokens(examples, kind: str, tokenizer, limit: int | None) -> int:
    if limit:
        return limit
    longest = max((len(e.target_ids) for e in examples), default=8)
    if metric_name(kind) == "accuracy":
        # Room for a chatty answer ("The sentiment of this review is positive."): the label is
        # extracted from the text, so a model is not scored on brevity.
        return max(16, longest + 2)
    cap = 96 if metric_name(kind) == "rougeL" else 32
    return max(4, min(cap, longest + 2))


@torch.no_grad()
def answer_loss(model, examples, tokenizer, architecture: str, batch_size: int, autocast) -> float:
    from tunelab.train.batching import collate, seq_length, to_sequences
    from tunelab.train.loss import CompletionLoss

    loss_model = CompletionLoss(model, architecture, "full")
    seqs = sorted(to_sequences(examples, architecture, include_prompt_loss=False), key=seq_length)
    total, n = 0.0, 0
    for s in range(0, len(seqs), batch_size):
        batch = collate(seqs[s:s + batch_size], tokenizer.pad_token_id)
        with autocast():
            loss_sum, count = loss_model(**batch.tensors)
        total += float(loss_sum)
        n += int(count)
    return total / n if n else math.nan


def generation_score(predictions: list[str], examples, kind: str, labels) -> float:
    name = metric_name(kind)
    if name == "accuracy":
        from tunelab.metrics.labels import extract_label

        hits = [extract_label(p, labels or []) == e.label for p, e in zip(predictions, examples)]
        return sum(hits) / len(hits)
    refs = [list(e.references) or [e.target_text] for e in examples]
    if name == "rougeL":
        from tunelab.metrics.rouge import rouge

        scores = rouge(predictions, refs, rouge_types=("rougeL",))
        return sum(s["rougeL"].fmeasure for s in scores) / len(scores)
    from tunelab.metrics.exact_match import exact_match

    return sum(exact_match(p, r) for p, r in zip(predictions, refs)) / len(predictions)


def score_model(model_name: str, tasks: dict, adapter: str | None = None, metrics=("loss", "generate"),
                batch_size: int = 16, max_new_tokens: int | None = None, precision: str = "bf16",
                model_cfg=None) -> dict:
    """tasks: name -> (kind, labels, examples). Returns name -> {"loss", "score", "metric", "n"}."""
    from tunelab.config.model import ModelConfig
    from tunelab.models.load import load_model
    from tunelab.train.validate import generate_greedy

    model_cfg = (model_cfg or ModelConfig()).model_copy(update={"name": model_name})
    model, tokenizer = load_model(model_cfg, adapter=adapter)
    architecture = "seq2seq" if model.config.is_encoder_decoder else "causal"
    autocast = contextlib.nullcontext
    if precision == "bf16":
        autocast = lambda: torch.autocast(device_type="cpu", dtype=torch.bfloat16)  # noqa: E731
    out = {}
    for name, (kind, labels, examples) in tasks.items():
        row = {"n": len(examples), "metric": metric_name(kind)}
        if "loss" in metrics:
            row["loss"] = answer_loss(model, examples, tokenizer, architecture, batch_size, autocast)
        if "generate" in metrics and examples:
            preds = generate_greedy(model, tokenizer, [list(e.prompt_ids) for e in examples],
                                    answer_tokens(examples, kind, tokenizer, max_new_tokens), batch_size,
                                    "cpu", autocast)
            row["score"] = generation_score(preds, examples, kind, labels)
            row["predictions"] = preds[:5]
        out[name] = row
    del model
    return out
