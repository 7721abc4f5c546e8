"""How a task is scored, decided in one place for every command.

`tunelab eval`, validation during training, `tunelab forgetting`, the `forgetting:` section, the
continual matrix, the demo and the search objective all ask `task_scoring(task)` which metrics a
task has and how its answers are produced, so the same model, task and split get the same
metric names and values whichever command computes them. A task may set any of these keys
itself (`eval_kind`, `metrics`, `max_new_tokens`, `stop`); the defaults depend on its kind:

| kind | eval_kind | metrics | max_new_tokens |
|---|---|---|---|
| classification | generate | accuracy (+ macro_f1, unmapped) | 16 |
| qa | generate | exact_match, token_f1 | 32 |
| summarization | generate | rouge1, rouge2, rougeL, rougeLsum | 96 |
| translation | generate | bleu (0-100), chrf (0-100) | 96 |
| instruction, chat | generate | rougeL | 128 |
| completion | generate | exact_match, rougeL | 64 |
| multiple_choice | loglikelihood | acc, acc_norm, acc_bytes | - |
| preference | preference | reward_accuracy, reward_margin | - |
| kto | generate | rougeL (the answer as the reference) | 128 |

`eval_kind: perplexity` scores any task by the log-likelihood of its reference answers:
token_nll (nats per answer token: the answer loss), perplexity, bits_per_byte.
`eval_kind: preference` (a preference task's default) scores each pair by the summed log-probs of
its chosen and its rejected answer given the shared prompt: reward_accuracy (chosen above
rejected), reward_margin (nats). `eval_kind: generate` on a preference task generates an answer
and scores it against the chosen one (rougeL).

The metric names themselves, their direction and their scale are not defined here but in the one
vocabulary every package reads (metrics/vocabulary.py: pure data, no numpy), so the names a task
may ask for are exactly the ones the scoring units report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tunelab.metrics import vocabulary

EvalKind = Literal["generate", "loglikelihood", "perplexity", "preference"]
EVAL_KINDS = ("generate", "loglikelihood", "perplexity", "preference")

GENERATION_METRICS = vocabulary.selectable("generate")
ROUGE_METRIC = vocabulary.ROUGE_KEY
LOGLIKELIHOOD_METRICS = vocabulary.selectable("loglikelihood")
PERPLEXITY_METRICS = vocabulary.selectable("perplexity")
PREFERENCE_METRICS = vocabulary.selectable("preference")

DEFAULT_METRICS = {
    "classification": ["accuracy"],
    "summarization": ["rouge1", "rouge2", "rougeL", "rougeLsum"],
    "translation": ["bleu", "chrf"],
    "qa": ["exact_match", "token_f1"],
    "multiple_choice": ["acc", "acc_norm", "acc_bytes"],
    "instruction": ["rougeL"],
    "completion": ["exact_match", "rougeL"],
    "chat": ["rougeL"],
    "preference": ["rougeL"],  # eval_kind generate: the chosen answer as the reference
    "kto": ["rougeL"],
}
DEFAULT_MAX_NEW_TOKENS = {
    "classification": 16,  # room for "The sentiment is positive."; labels are extracted from the text
    "qa": 32,
    "summarization": 96,
    "translation": 96,
    "instruction": 128,
    "chat": 128,
    "preference": 128,
    "kto": 128,
    "completion": 64,
    "multiple_choice": 8,
}
# Metrics measured on a 0-100 scale (as sacrebleu prints them); every other one is 0-1 or a loss.
PERCENT_SCALE = vocabulary.keys_where(scale="0-100")
LOWER_IS_BETTER = vocabulary.keys_where(higher_is_better=False)


@dataclass(frozen=True)
class TaskScoring:
    eval_kind: str
    metrics: list[str]
    max_new_tokens: int
    stop: list[str] = field(default_factory=list)

    @property
    def primary_metric(self) -> str:
        """The number a task is judged by in forgetting and compare tables: its first metric."""
        return self.metrics[0]


def default_eval_kind(kind: str) -> str:
    return {"multiple_choice": "loglikelihood", "preference": "preference"}.get(kind, "generate")


def known_metrics(eval_kind: str) -> tuple[str, ...]:
    return {"generate": GENERATION_METRICS, "loglikelihood": LOGLIKELIHOOD_METRICS,
            "perplexity": PERPLEXITY_METRICS, "preference": PREFERENCE_METRICS}[eval_kind]


def check_scoring(name: str, kind: str, eval_kind: str | None, metrics: list[str] | None) -> None:
    """Unknown metric names or a metric that does not fit the task: a ValueError before any model runs."""
    eval_kind = eval_kind or default_eval_kind(kind)
    if eval_kind == "loglikelihood" and kind != "multiple_choice":
        raise ValueError(f"task '{name}': eval_kind loglikelihood compares answer options; it needs a "
                         f"multiple_choice task (this one is {kind})")
    if eval_kind == "preference" and kind != "preference":
        raise ValueError(f"task '{name}': eval_kind preference compares a chosen with a rejected answer; it "
                         f"needs a preference task (this one is {kind})")
    for metric in metrics or []:
        allowed = known_metrics(eval_kind)
        if metric not in allowed and not (eval_kind == "generate" and ROUGE_METRIC.match(metric)):
            extra = f", {vocabulary.ROUGE_KEY_HINT}" if eval_kind == "generate" else ""
            raise ValueError(f"task '{name}': unknown {eval_kind} metric '{metric}' (known: "
                             f"{', '.join(allowed)}{extra})")
        if metric == "accuracy" and kind != "classification":
            raise ValueError(f"task '{name}': accuracy of extracted labels needs a classification task "
                             f"(this one is {kind}; exact_match compares answers)")
    if metrics is not None and not metrics:
        raise ValueError(f"task '{name}': metrics is empty")


def task_scoring(kind: str, eval_kind: str | None = None, metrics: list[str] | None = None,
                 max_new_tokens: int | None = None, stop: list[str] | None = None) -> TaskScoring:
    """The scoring of a task: its own keys where set, else the defaults of its kind."""
    eval_kind = eval_kind or default_eval_kind(kind)
    if metrics is None:  # the eval kinds that score log-likelihoods report all their keys
        by_eval_kind = {"perplexity": PERPLEXITY_METRICS, "preference": PREFERENCE_METRICS}
        metrics = list(by_eval_kind.get(eval_kind, DEFAULT_METRICS[kind]))
    return TaskScoring(eval_kind, list(metrics), max_new_tokens or DEFAULT_MAX_NEW_TOKENS[kind], list(stop or []))


def higher_is_better(metric: str) -> bool:
    """The metric's direction in the vocabulary; a name it does not know (lm-eval's): higher."""
    found = vocabulary.key(metric)
    return found is None or found.higher_is_better


def scale_of(metric: str, entry: dict | None = None) -> str:
    """The scale a metric is on: "0-100" (BLEU, chrF), "0-1" (accuracy, ROUGE, EM, ...), or the
    metric's own name for an unbounded lower-is-better one (token_nll, perplexity, bits_per_byte).
    The report draws each scale on its own axis (perplexity and token_nll differ by orders of
    magnitude); the comparison engine averages only the bounded ones and words an MDE by it.
    entry: the JSON row or value, whose "scale" / "higher_is_better" (lm-eval metrics carry their
    own) win over the name."""
    entry = entry or {}
    found = vocabulary.key(metric)
    scale = found.scale if found is not None else "0-1"
    if entry.get("scale") == "0-100" or scale == "0-100":
        return "0-100"
    if scale == "unbounded" or entry.get("higher_is_better") is False:
        return metric
    return "0-1"
