"""`data:` section: sources, task templates, tokenisation policy, splits, leak check and mixtures.

The pipeline that reads this lives in tunelab.data; docs/data.md is the user-facing reference.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tunelab.config.base import StrictModel

TASK_KINDS = (
    "classification",
    "summarization",
    "translation",
    "qa",
    "multiple_choice",
    "instruction",
    "completion",
    "chat",
)
TaskKind = Literal[TASK_KINDS]  # the pydantic type of TaskConfig.kind: the same list, spelled once
SPLIT_NAMES = ("train", "validation", "test")
SplitName = Literal["train", "validation", "test"]
# A field mapping value: one source column, or several (e.g. three reference summaries).
FieldRef = str | list[str]


class SourceConfig(StrictModel):
    """Where records come from: a file (or glob), a hub dataset, or records given inline."""

    # Local file or glob (e.g. `mmlu/test/*.csv`), relative to the config file's folder.
    path: str | None = None
    format: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet"] = "auto"
    # CSV/TSV: whether the first row names the columns. Header-less files need `columns`.
    header: bool = True
    columns: list[str] | None = None
    # Hugging Face hub dataset (loaded with datasets.load_dataset).
    hub: str | None = None
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    # Records given directly (Python API or inline YAML).
    records: list[dict[str, Any]] | None = None
    # Field mapping overrides for this source only (e.g. a test file with other column names).
    fields: dict[str, FieldRef] | None = None

    @model_validator(mode="before")
    @classmethod
    def _path_shorthand(cls, data):
        # `source: data/train.jsonl` is short for `source: {path: data/train.jsonl}`.
        if isinstance(data, str):
            return {"path": data}
        if isinstance(data, list):
            return {"records": data}
        if isinstance(data, dict) and data.get("columns") is not None and "header" not in data:
            # Naming the columns means the file has no header row, unless told otherwise.
            data = {**data, "header": False}
        return data

    @model_validator(mode="after")
    def _exactly_one_origin(self):
        given = [k for k in ("path", "hub", "records") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a source needs exactly one of 'path', 'hub' or 'records'")
        return self


class TaskConfig(StrictModel):
    """One task: a source, how its fields map onto a template, and how prompts are written."""

    name: str
    kind: TaskKind
    # All records, split by ratios ...
    source: SourceConfig | None = None
    # ... or given split files; splits missing here are carved from `train` by the ratios.
    splits: dict[SplitName, SourceConfig] | None = None
    # template role -> source column(s); roles per kind are listed in docs/data.md.
    fields: dict[str, FieldRef] = Field(default_factory=dict)
    # classification: label value -> verbalizer ({0: negative, 1: positive}) or a list (index -> word).
    labels: dict[str, str] | list[str] | None = None
    # multiple choice: the model answers with the letter (A, B, ...) or with the choice text.
    answer_format: Literal["letter", "text"] = "letter"
    # translation: language names used by the default instruction.
    source_lang: str | None = None
    target_lang: str | None = None
    instruction: str | None = None
    system_prompt: str | None = None
    # Jinja template for the user message (sandboxed); variables: the mapped fields, instruction,
    # labels, choices, record (the raw source record).
    template: str | None = None
    # Literal strings removed from the end of answers (e.g. T0's "<|endoftext|>").
    strip_suffix: list[str] = Field(default_factory=list)
    few_shot: int = Field(default=0, ge=0)
    # Render through the tokenizer's chat template (when it has one); false = plain text format.
    chat_template: bool = True
    # Read at most this many records per source (first N, before splitting).
    limit: int | None = Field(default=None, ge=1)
    # Relative split weights overriding data.split for this task, e.g. {validation: 0}.
    ratios: dict[SplitName, float] | None = None
    # Mixture weight for `mixture.strategy: weights`.
    weight: float | None = Field(default=None, ge=0)

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys_as_text(cls, value):
        # YAML reads `{0: negative}` with int keys; records may hold "0" or 0: compare as text.
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("ratios")
    @classmethod
    def _ratios_not_negative(cls, value):
        if value and any(v < 0 for v in value.values()):
            raise ValueError("split ratios must be 0 or more")
        return value

    @model_validator(mode="after")
    def _has_data(self):
        if self.labels is not None and self.kind != "classification":
            raise ValueError(f"task '{self.name}': 'labels' applies to kind classification only")
        if self.source is None and not self.splits:
            raise ValueError(f"task '{self.name}' needs 'source' or 'splits'")
        if self.source is not None and self.splits:
            raise ValueError(f"task '{self.name}': give either 'source' or 'splits', not both")
        if self.splits and "train" not in self.splits and "test" not in self.splits and "validation" not in self.splits:
            raise ValueError(f"task '{self.name}': 'splits' is empty")
        return self


class SplitConfig(StrictModel):
    """Relative sizes of train/validation/test (normalised), seed and stratification."""

    train: float = Field(default=0.8, ge=0)
    validation: float = Field(default=0.1, ge=0)
    test: float = Field(default=0.1, ge=0)
    # None: the experiment's top-level seed.
    seed: int | None = None
    # Classification tasks keep each label's share in every split.
    stratify: bool = True

    @model_validator(mode="after")
    def _not_all_zero(self):
        if self.train + self.validation + self.test <= 0:
            raise ValueError("split ratios must not all be zero")
        return self


class MixtureConfig(StrictModel):
    """How training examples of several tasks are mixed (formulas in docs/data.md)."""

    strategy: Literal["concat", "proportional", "temperature", "equal", "weights"] = "concat"
    # K: examples of one task counted at most K times in the rates (T5's artificial limit).
    cap: int | None = Field(default=None, ge=1)
    # T: rate proportional to min(n, K) ** (1 / T).
    temperature: float = Field(default=1.0, gt=0)
    # strategy `weights`: task name -> weight (or set `weight:` on each task).
    weights: dict[str, float] | None = None
    # Examples per training epoch; default: sum of min(n, K) (sum of n without a cap).
    epoch_size: int | None = Field(default=None, ge=1)


class DataConfig(StrictModel):
    tasks: list[TaskConfig] = Field(default_factory=list)
    # Prompt + answer tokens, end-of-turn included.
    max_length: int = Field(default=1024, ge=2)
    # Over-long examples: cut the prompt from the left, or drop them. Both are counted.
    overlength: Literal["truncate_left", "reject"] = "truncate_left"
    # Bad records: stop with an error naming file, line and field, or skip and list them.
    on_error: Literal["raise", "skip"] = "raise"
    split: SplitConfig = Field(default_factory=SplitConfig)
    # Duplicates across train/validation/test: report them, remove them from the earlier split, or off.
    leak_check: Literal["report", "remove", "off"] = "report"
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)

    @model_validator(mode="after")
    def _unique_task_names(self):
        seen = set()
        for task in self.tasks:
            if task.name in seen:
                raise ValueError(f"task name '{task.name}' is used twice")
            seen.add(task.name)
        return self
