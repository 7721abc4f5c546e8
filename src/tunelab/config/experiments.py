"""`stages:` (continual fine-tuning) and `search:` (hyperparameter search) sections.

Both are optional: a config without them is one ordinary training run. The code that uses them
lives in tunelab.experiments (continual.py, search.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tunelab.config.base import StrictModel, check_path_name


class ReplayConfig(StrictModel):
    """Earlier stages' training examples mixed into a later stage (a remedy for forgetting).

    Give exactly one of `fraction` (of each earlier task's training split) or `count` (examples
    per earlier task). The selection is deterministic for `seed` (default: the experiment seed).
    """

    fraction: float | None = Field(default=None, gt=0.0, le=1.0)
    count: int | None = Field(default=None, ge=1)
    seed: int | None = None

    @model_validator(mode="after")
    def _one_of(self):
        if (self.fraction is None) == (self.count is None):
            raise ValueError("replay needs exactly one of 'fraction' (0-1] or 'count' (>= 1)")
        return self


class StageConfig(StrictModel):
    """One stage of a continual run: train on `tasks`, starting from the previous stage's model."""

    name: str | None = None
    # Names of tasks in `data.tasks` trained in this stage (a mixture when several).
    tasks: list[str] = Field(min_length=1)
    # Replay for this stage (overrides the top-level `continual.replay`); `false` turns it off.
    replay: ReplayConfig | Literal[False] | None = None
    # `key.sub=value`-style overrides of the experiment config for this stage only,
    # e.g. {"train.epochs": 2, "train.lr": 1e-4}.
    overrides: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, value):
        return value if value is None else check_path_name(value, "stage name")  # a stage's run folder


class ContinualConfig(StrictModel):
    """Options shared by all stages."""

    # Default replay for every stage after the first; a stage's own `replay:` wins.
    replay: ReplayConfig | None = None
    # Tasks (names in data.tasks) scored after every stage besides the trained ones: held-out
    # tasks whose change measures forgetting of what the base model could already do.
    # Empty: every task in data.tasks is scored.
    eval_tasks: list[str] = []
    # "loss": the answer-token NLL of each task's references; "generate": each task's primary
    # metric from the evaluation engine (tunelab.config.scoring: classification accuracy, ROUGE for
    # summaries, exact match for QA, acc for multiple choice, ...), as `tunelab eval` scores it.
    metrics: list[Literal["loss", "generate"]] = ["loss", "generate"]
    # Examples per task scored after each stage (None = the whole validation/test split).
    eval_limit: int | None = None
    # Split the matrix is computed on.
    eval_split: Literal["validation", "test"] = "test"
    # Batch size and answer length for the generation metrics of the matrix.
    eval_batch_size: int = Field(default=16, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1)  # None: each task's own (tunelab.config.scoring)
    # Weights dtype of the scoring: float32 makes batched and single outputs identical.
    eval_dtype: Literal["float32", "bfloat16"] = "float32"
    bootstrap_resamples: int = Field(default=1000, ge=0)
    # Scoring a stage's model on examples it (or an earlier stage) trained on is refused unless true.
    allow_train_overlap: bool = False
    # Delete each finished stage's checkpoints/ (optimizer states of a full fine-tune are ~3x the
    # model); the stage's final/ model or adapter is always kept.
    keep_checkpoints: bool = False


class ParamSpace(StrictModel):
    """One searched hyperparameter. `type` float/int use low/high (log for a log scale);
    categorical uses choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log-scale parameter needs low > 0")
        return self


class SearchConfig(StrictModel):
    """`tunelab tune`: Optuna TPE over `space`, pruning on the validation metric."""

    # Dotted config keys -> their ranges, e.g. {"train.lr": {type: float, low: 1e-5, high: 1e-3, log: true}}.
    space: dict[str, ParamSpace] = Field(min_length=1)
    # Validation metric (as logged in metrics.jsonl validation events) and its direction.
    metric: str = "val_loss"
    direction: Literal["minimize", "maximize"] = "minimize"
    # Second objective: the average drop on held-out tasks (`forgetting_tasks`), minimised;
    # the study becomes multi-objective and reports the Pareto front of gain vs forgetting.
    forgetting: bool = False
    # Task references as in `forgetting.tasks` (recipes, data-task mappings or data.tasks names).
    forgetting_tasks: list[str | dict] = []
    # Default: sqlite:///<output_dir>/<name>/study.db. Any SQLAlchemy URL shares one study
    # across machines (e.g. postgresql://user@host/db).
    storage: str | None = None
    study_name: str | None = None
    pruner: Literal["median", "none"] = "median"
    # Trials run before the pruner starts pruning, and validation reports ignored per trial.
    pruner_startup_trials: int = 2
    pruner_warmup_steps: int = 0
    # Random trials before TPE takes over.
    startup_trials: int = 4
    seed: int | None = None

    @model_validator(mode="after")
    def _forgetting_needs_tasks(self):
        if self.forgetting and not self.forgetting_tasks:
            raise ValueError("search.forgetting: true needs search.forgetting_tasks (held-out tasks whose "
                             "average drop is the second objective)")
        return self

    @field_validator("study_name")
    @classmethod
    def _study_name_is_a_file_name(cls, value):
        return value if value is None else check_path_name(value, "study name")

    @field_validator("space")
    @classmethod
    def _keys_are_dotted(cls, space):
        for key in space:
            if not key or key.startswith(".") or key.endswith("."):
                raise ValueError(f"search.space key '{key}' is not a dotted config key like 'train.lr'")
        return space


class StudyInterpolation(StrictModel):
    """Weight interpolation (WiSE-FT) of trained study systems: each alpha in (0, 1) becomes a
    system of its own, scored on the forgetting tasks without training (evaluate/interpolation.py)."""

    # Names of study systems (e.g. "full-lr0.0001" from methods, or a name in `systems`).
    systems: list[str] = Field(min_length=1)
    # Weights of the trained model; 0 (the reference model) and 1 (the system itself) are already
    # in the study.
    alphas: list[float] = Field(default=[0.25, 0.5, 0.75], min_length=1)

    @field_validator("alphas")
    @classmethod
    def _inside(cls, alphas):
        bad = [a for a in alphas if not 0.0 < a < 1.0]
        if bad:
            raise ValueError(f"study.interpolation.alphas: {bad} -- give weights strictly between 0 and 1 "
                             f"(0 is the reference model, 1 the system as trained: both are in the study already)")
        return sorted(set(alphas))


class StudyConfig(StrictModel):
    """A trade-off study (tunelab.experiments.study): the same data trained several ways, each
    system scored before and after on the tuned task and the `forgetting:` section's held-out
    tasks, then all of them side by side with the gain-vs-forgetting plot."""

    # Method -> learning rates: one system per pair (method and lr set, everything else as the
    # config says), e.g. {"lora": [1e-4, 3e-4, 1e-3], "full": [1e-5, 3e-5, 1e-4]}.
    methods: dict[str, list[float]] = {}
    # Further systems by name: `key.sub=value` overrides of the config, e.g. a mixture remedy
    # {"lora-mixture": {"data.tasks": [...], "train.lr": 3e-4}}.
    systems: dict[str, dict[str, Any]] = {}
    # The task whose gain is measured (a name in data.tasks); default: the first data task.
    tuned_task: str | None = None
    # Interpolate trained systems back toward the reference model, e.g.
    # {systems: [full-lr0.0001], alphas: [0.25, 0.5, 0.75]}: a curve on the trade-off plot.
    interpolation: StudyInterpolation | None = None

    @model_validator(mode="after")
    def _some_system(self):
        if not self.methods and not self.systems:
            raise ValueError("study: give 'methods' (method -> learning rates) and/or 'systems' (name -> overrides)")
        for name in self.systems:
            check_path_name(name, "study system name")
        return self
