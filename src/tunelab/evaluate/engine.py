"""The evaluation engine: (model, task, examples) -> per-example rows and corpus metrics.

Every number tunelab reports about a model on a task comes from `score_examples`: `tunelab eval`,
`tunelab forgetting`, `tunelab compare`, validation during training, the `forgetting:` section,
the continual matrix, the demo and the search objective. One generation loop
(generation.generate), one log-likelihood scorer (loglikelihood.py: multiple choice, preference
pairs and perplexity), one place that decides a task's metrics and generation settings
(tunelab.config.scoring.task_scoring), one scorer
(scoring.py over tunelab.metrics). So the same model, task and examples give the same per-example
predictions and the same metric values whichever command asks.

Model calls go through the result cache (cache.py) when a cache key is given: each batch is
written as it finishes, so an interrupted evaluation resumes where it stopped.

Several processes (`world`, shard.py): each scores its share of the batches, the outputs are
gathered on every process before anything is scored, so rows and metrics are the one-process ones;
the main process alone writes the cache (the others' batches once gathered) and prints progress.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from tunelab.config.base import UserError
from tunelab.config.evaluate import GenerationConfig
from tunelab.config.scoring import TaskScoring, higher_is_better, task_scoring
from tunelab.evaluate.cache import ResultCache, digest
from tunelab.evaluate.generation import WorkCounter, generate
from tunelab.evaluate.loglikelihood import continuation_ids, score_requests, score_shared_context
from tunelab.evaluate.padding import pad_token_id
from tunelab.evaluate.scoring import score_choices, score_generations, score_perplexity, score_preference
from tunelab.evaluate.shard import ONE, World, from_main, gather


@dataclass
class LoadedModel:
    """A model already in memory (validation during training, a caller's own model)."""

    model: Any
    tokenizer: Any


def log(message: str) -> None:
    print(f"[eval] {message}", file=sys.stderr, flush=True)


class BatchProgress:
    """Plain progress lines, one per batch: readable in CI logs and on a terminal."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.done, self.t0 = 0, time.perf_counter()

    def __call__(self, n: int) -> None:
        self.done += n
        if self.enabled:
            log(f"{self.label}: {self.done}/{self.total} items ({time.perf_counter() - self.t0:.1f}s)")


def scoring_of(spec: dict) -> TaskScoring:
    return task_scoring(spec["kind"], spec.get("eval_kind"), spec.get("metrics"), spec.get("max_new_tokens"),
                        spec.get("stop"))


def generation_settings(scoring: TaskScoring, generation: GenerationConfig | None) -> GenerationConfig:
    """The caller's settings, with the task's max_new_tokens and stop where the caller left them unset."""
    base = generation or GenerationConfig()
    update = {}
    if base.max_new_tokens is None:
        update["max_new_tokens"] = scoring.max_new_tokens
    if "stop" not in base.model_fields_set:
        update["stop"] = scoring.stop
    return base.model_copy(update=update)


def example_rows(examples, split: str) -> list[dict]:
    return [{"index": i, "key": f"{split}:{ex.source or ex.source_index}", "source": ex.source,
             "source_index": ex.source_index, "content_key": ex.content_key, "prompt": ex.prompt_text,
             "references": ex.references, "label": ex.label, "prompt_truncated": ex.truncated}
            for i, ex in enumerate(examples)]


def _cached(cache: ResultCache, keys: list[str], run_missing, world: World = ONE) -> tuple[list[dict], set[int]]:
    """Values for `keys`, computing the missing ones with run_missing(indices, store). Several
    processes: the main process's cache entries are handed to the others first, so they agree on
    what is missing and plan the same batches; each computes its batches of it, and the outputs are
    gathered so that every process holds them all (the main process writes the others' to the file)."""
    if world.size > 1:
        cache.data.update(from_main({k: cache.data[k] for k in set(keys) if k in cache.data}, world))
    missing = sorted({k: i for i, k in enumerate(keys) if cache.get(k) is None}.values())
    if missing:
        found: dict[int, dict] = {}

        def store(idx, outs):
            found.update(zip(idx, outs))
            cache.put_many({keys[i]: o for i, o in zip(idx, outs)})

        run_missing(missing, store)
        cache.put_many({keys[i]: o for i, o in gather(found, world).items() if i not in found})
    return [cache.data[k] for k in keys], set(missing)


def end_of_turn_ids(tokenizer, chat_template: dict | None) -> set[int]:
    """The token a task's chat template ends answers with, when it is one special token."""
    text = (chat_template or {}).get("end_of_turn") if chat_template else None
    token = tokenizer.convert_tokens_to_ids(text) if text else None
    return {token} if isinstance(token, int) and token != tokenizer.unk_token_id else set()


def _generate(lm, examples, settings, cache, batch_size, counter, label, verbose, extra_eos, world) -> list[dict]:
    keys = [digest(ex.prompt_ids) for ex in examples]

    def run(missing, store):
        generate(lm.model, lm.tokenizer, [examples[i].prompt_ids for i in missing], settings, batch_size,
                 keys=[keys[i] for i in missing], counter=counter,
                 progress=BatchProgress(len(missing), f"{label} generate", verbose), extra_eos=extra_eos,
                 on_batch=lambda idx, outs: store([missing[j] for j in idx], [asdict(o) for o in outs]), world=world)

    outs, computed = _cached(cache, keys, run, world)
    return [dict(o, cached=i not in computed) for i, o in enumerate(outs)]


def _choices(lm, groups, cache, batch_size, counter, label, verbose, world) -> list[list[dict]]:
    """Answers scored against each other in one context: multiple choice (a question's options) and
    preference pairs (chosen, rejected). One cache entry per group (its context and all its options)."""
    keys = [digest([ctx, opts]) for ctx, opts in groups]
    pad = pad_token_id(lm.tokenizer)

    def run(missing, store):
        score_shared_context(lm.model, [groups[i] for i in missing], batch_size, pad, counter,
                             progress=BatchProgress(len(missing), f"{label} log-likelihood", verbose),
                             on_batch=lambda idx, outs: store([missing[j] for j in idx],
                                                              [{"options": o} for o in outs]), world=world)

    outs, _ = _cached(cache, keys, run, world)
    return [o["options"] for o in outs]


def _answer_logprobs(lm, examples, cache, batch_size, counter, label, verbose, world) -> list[dict]:
    requests = [(ex.prompt_ids, ex.target_ids) for ex in examples]
    keys = [digest([ctx, cont]) for ctx, cont in requests]
    pad = pad_token_id(lm.tokenizer)

    def run(missing, store):
        score_requests(lm.model, [requests[i] for i in missing], batch_size, pad, counter,
                       progress=BatchProgress(len(missing), f"{label} log-likelihood", verbose),
                       on_batch=lambda idx, outs: store([missing[j] for j in idx], outs), world=world)

    outs, _ = _cached(cache, keys, run, world)
    return outs


def _score_pairs(name, examples, rows, metrics, n_resamples, confidence, score_groups) -> dict:
    """Preference pairs: the summed log-probs of the chosen and of the rejected answer given the shared
    prompt, over the answer's tokens and its end-of-turn token (the span the preference loss trains:
    data/preference.py), scored as one group of two options by the multiple-choice scorer. Fills the
    rows in place; returns the corpus metrics."""
    if not all(getattr(ex, "rejected_ids", None) for ex in examples):
        raise UserError(f"task '{name}': eval_kind preference needs pairs with a rejected answer (a preference task)")
    outs = score_groups([(ex.prompt_ids, [ex.target_ids, ex.rejected_ids]) for ex in examples])
    records = [{"logp_chosen": chosen["logprob"], "logp_rejected": rejected["logprob"]} for chosen, rejected in outs]
    corpus, per = score_preference(records, metrics, n_resamples, confidence)
    for row, ex, p, (chosen, rejected) in zip(rows, examples, per, outs):
        row.update(prediction=None, target=ex.target_text, rejected=ex.rejected_text, logp_chosen=p["logp_chosen"],
                   logp_rejected=p["logp_rejected"], margin=p["margin"], correct=p["correct"],
                   n_tokens_chosen=chosen["n_tokens"], n_tokens_rejected=rejected["n_tokens"],
                   scores={m: p[m] for m in ("reward_accuracy", "reward_margin")})
    return corpus


def score_examples(lm, spec: dict, examples: list, *, split: str = "test", labels: list[str] | None = None,
                   label_synonyms: dict | None = None, generation: GenerationConfig | None = None,
                   batch_size: int = 8, cache_key: dict | None = None, n_resamples: int = 1000,
                   confidence: float = 0.95, counter: WorkCounter | None = None, autocast=None,
                   verbose: bool = True, chat_template: dict | None = None,
                   world: World = ONE) -> tuple[dict, list[dict]]:
    """Score one task's examples with `lm` (.model, .tokenizer): (result, per-example rows).

    result: {"eval_kind", "metrics": {name: {value, ci, n, ...}}, "primary_metric", "generation",
    "cache"}. cache_key: the model's identity (harness.evaluate); None keeps results in memory only.
    world: the processes sharing this evaluation (shard.py); every one of them must call this, and
    every one gets the whole result and rows."""
    counter = counter or WorkCounter()
    scoring = scoring_of(spec)
    name, kind = spec["name"], scoring.eval_kind
    rows = example_rows(examples, split)
    settings = generation_settings(scoring, generation) if kind == "generate" else None
    cache_id = {**(cache_key or {}), "kind": "generate" if kind == "generate" else "loglikelihood"}
    extra_eos = end_of_turn_ids(lm.tokenizer, chat_template) if kind == "generate" else set()
    if settings is not None:
        cache_id["settings"] = settings.model_dump()
        if extra_eos:  # another stopping token is another generation
            cache_id["end_of_turn"] = sorted(extra_eos)
    # The main process alone reads and writes the cache file (one writer; the others may not even
    # share its disk); the others hold what it hands them in memory (_cached).
    cache = ResultCache(cache_id, enabled=cache_key is not None and world.main)
    verbose = verbose and world.main
    label = name if world.size == 1 else f"{name} [process 1 of {world.size}]"
    with (autocast or contextlib.nullcontext)():
        if kind == "generate":
            outs = _generate(lm, examples, settings, cache, batch_size, counter, label, verbose, extra_eos, world)
            records = [{"prediction": o["text"], "references": ex.references, "label": ex.label}
                       for o, ex in zip(outs, examples)]
            corpus, per = score_generations(records, scoring.metrics, labels, label_synonyms, n_resamples, confidence)
            for row, o, p in zip(rows, outs, per):
                row.update(prediction=o["text"], stop_reason=o["stop_reason"], generated_tokens=len(o["token_ids"]),
                           cached=o["cached"], scores=p)
        elif kind == "loglikelihood":
            if not all(ex.choices for ex in examples):
                raise UserError(f"task '{name}': log-likelihood scoring needs a multiple_choice task (choices)")
            groups = [(ex.prompt_ids, [continuation_ids(lm.tokenizer, ex.prompt_text, c) for c in ex.choices])
                      for ex in examples]
            outs = _choices(lm, groups, cache, batch_size, counter, label, verbose, world)
            records = [{"logprobs": [o["logprob"] for o in group], "choices": ex.choices,
                        "answer_index": ex.answer_index} for group, ex in zip(outs, examples)]
            corpus, per = score_choices(records, scoring.metrics, n_resamples, confidence)
            for row, r, p, ex in zip(rows, records, per, examples):
                row.update(choices=ex.choices, answer_index=ex.answer_index, logprobs=r["logprobs"],
                           prediction=ex.choices[p["predicted_index"]], scores=p)
        elif kind == "preference":
            corpus = _score_pairs(name, examples, rows, scoring.metrics, n_resamples, confidence,
                                  lambda groups: _choices(lm, groups, cache, batch_size, counter, label, verbose,
                                                          world))
        else:
            outs = _answer_logprobs(lm, examples, cache, batch_size, counter, label, verbose, world)
            records = [{"logprob": o["logprob"], "n_tokens": o["n_tokens"],
                        "n_bytes": len(ex.target_text.encode("utf-8"))} for o, ex in zip(outs, examples)]
            corpus, per = score_perplexity(records, scoring.metrics, n_resamples, confidence)
            for row, ex, p in zip(rows, examples, per):
                row.update(prediction=None, target=ex.target_text, scores=p)
    for metric, entry in corpus.items():
        entry.setdefault("higher_is_better", higher_is_better(metric))
    result = {"eval_kind": kind, "metrics": corpus, "primary_metric": scoring.primary_metric,
              "generation": settings.model_dump() if settings is not None else None,
              "cache": {"hits": cache.hits, "misses": cache.misses, "file": str(cache.path) if cache.enabled else None}}
    return result, rows
