"""`eval:` and `forgetting:` sections: which tasks to score, how, and forgetting checks.

A task is either a recipe reference (`"sst2=../shared/data/sst2"`, or a mapping with a `recipe:`
key, see tunelab.evaluate.recipes) or a data-pipeline task mapping (the same shape as a
`data.tasks` entry) that tunelab.data.build_task turns into examples.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tunelab.config.base import StrictModel


class GenerationConfig(StrictModel):
    """`eval.generation` / `forgetting.generation`: how generate-kind tasks decode."""

    # None: each task's own max_new_tokens (tunelab.config.scoring); a number applies to every task.
    max_new_tokens: int | None = None
    # Greedy by default: the only setting whose outputs do not depend on a random seed.
    do_sample: bool = False
    # Sampling only (do_sample: true): softmax temperature, nucleus mass, top-k (0: off).
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    # Sampling only: each example draws from its own generator seeded by (seed, example).
    seed: int = 0
    # Generation stops at the first of these strings (the text after it is cut off) or at EOS.
    # Unset: each task's own stop strings; set (even to []), these replace them for every task.
    stop: list[str] = []

    @field_validator("max_new_tokens")
    @classmethod
    def _positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("must be >= 1")
        return v


class LmEvalConfig(StrictModel):
    """lm-evaluation-harness tasks, scored through lm-eval's HF wrapper (tunelab.evaluate.lmeval)."""

    # lm-eval task, group or tag names; "a,b" is split at commas.
    tasks: list[str] = []
    # A folder of local lm-eval task YAMLs (offline tasks); relative to the config's folder.
    include: str | None = None
    # None: each task's own num_fewshot (0 when it sets none), as lm-eval does.
    num_fewshot: int | None = Field(None, ge=0)

    @field_validator("tasks", mode="before")
    @classmethod
    def _names(cls, v):
        items = [v] if isinstance(v, str) else list(v or [])
        return [n.strip() for item in items for n in str(item).split(",") if n.strip()]


class EvalConfig(StrictModel):
    """`eval:`: what `tunelab eval --config` scores. docs/evaluation.md lists every key."""

    # Recipe strings (sst2=PATH), mappings, or bare names of the config's own data.tasks.
    tasks: list[str | dict] = []
    # lm-evaluation-harness tasks, beside `tasks` (docs/evaluation.md, "lm-evaluation-harness tasks").
    lm_eval: LmEvalConfig | None = None
    # At most this many examples per task (the first N of the split, in source order); None: all.
    # results.json records n, n_available and this limit per task, and the commands print them.
    limit: int | None = None
    # The split scored. A plain `source:` is split 80/10/10 by data.split (seeded), so "test" is
    # its tenth; a task's own split files are scored whole.
    split: str = "test"
    # Prompts per model call; does not change generated text (docs/evaluation.md, "Cache").
    batch_size: int = 8
    # float32 is the default because batched == unbatched outputs need it; bfloat16 is faster.
    dtype: Literal["float32", "bfloat16"] = "float32"
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    # Resamples behind every bootstrap CI and paired test (seed 0); confidence: the CI's level.
    bootstrap_resamples: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    # Reuse per-example outputs under $TUNELAB_HOME/eval-cache/ (false: recompute).
    cache: bool = True
    # Scoring a tuned model on its own training examples is refused (the contamination guard);
    # true scores them anyway, and results.json still reports the overlap.
    allow_train_overlap: bool = False


class ForgettingConfig(StrictModel):
    """Held-out tasks scored before and after training: the forgetting report of a run."""

    # Scored on the base model before training and on final/ after it; same forms as eval.tasks.
    tasks: list[str | dict] = []
    # lm-evaluation-harness tasks scored before and after training like `tasks`.
    lm_eval: LmEvalConfig | None = None
    # The task the run is tuned for (its gain is reported apart from the held-out drop).
    tuned_task: str | None = None
    # At most 50 examples per task by default (the first 50 of the split), so that scoring twice
    # around training stays cheap; null scores every example. A cut is not silent: results.json
    # records n, n_available and this limit (marked as the default) per task.
    limit: int | None = 50
    # As eval.split: a plain `source:` is split 80/10/10 (data.split), so "test" is its tenth.
    split: str = "test"
    batch_size: int = 8
    dtype: Literal["float32", "bfloat16"] = "float32"
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    bootstrap_resamples: int = Field(1000, ge=0)
    # Score the base model at the start of training / the final model at the end.
    before: bool = True
    after: bool = True
    cache: bool = True
    # As eval.allow_train_overlap, checked before training starts.
    allow_train_overlap: bool = False
