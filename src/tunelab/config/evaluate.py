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
    # None: each task's own max_new_tokens (tunelab.config.scoring); a number applies to every task.
    max_new_tokens: int | None = None
    # Greedy by default: the only setting whose outputs do not depend on a random seed.
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    # Generation stops at the first of these strings (the text after it is cut off) or at EOS.
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
    tasks: list[str | dict] = []
    # lm-evaluation-harness tasks, beside `tasks` (docs/evaluation.md, "lm-evaluation-harness tasks").
    lm_eval: LmEvalConfig | None = None
    # At most this many examples per task (the first N of the split, in source order).
    limit: int | None = None
    split: str = "test"
    batch_size: int = 8
    # float32 is the default because batched == unbatched outputs need it; bfloat16 is faster.
    dtype: Literal["float32", "bfloat16"] = "float32"
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    bootstrap_resamples: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)
    cache: bool = True
    # Scoring a tuned model on its own training examples is refused (the contamination guard);
    # true scores them anyway, and results.json still reports the overlap.
    allow_train_overlap: bool = False


class ForgettingConfig(StrictModel):
    """Held-out tasks scored before and after training: the forgetting report of a run."""

    tasks: list[str | dict] = []
    # lm-evaluation-harness tasks scored before and after training like `tasks`.
    lm_eval: LmEvalConfig | None = None
    # The task the run is tuned for (its gain is reported apart from the held-out drop).
    tuned_task: str | None = None
    limit: int | None = 50
    split: str = "test"
    batch_size: int = 8
    dtype: Literal["float32", "bfloat16"] = "float32"
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    bootstrap_resamples: int = Field(1000, ge=0)
    before: bool = True
    after: bool = True
    cache: bool = True
    allow_train_overlap: bool = False
