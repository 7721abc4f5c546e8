"""`data:` section: sources, task templates, tokenisation policy, splits, leak check and mixtures.

The pipeline that reads this lives in tunelab.data; docs/data.md is the user-facing reference.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from tunelab.config.base import StrictModel, check_path_name
from tunelab.config.scoring import EvalKind, check_scoring

TASK_KINDS = (
    "classification",
    "summarization",
    "translation",
    "qa",
    "multiple_choice",
    "instruction",
    "completion",
    "chat",
    "preference",  # chosen/rejected pairs (DPO family; tunelab.data.preference)
    "kto",  # unpaired answers marked desirable or not (KTO)
)
TaskKind = Literal[TASK_KINDS]  # the pydantic type of TaskConfig.kind: the same list, spelled once
SPLIT_NAMES = ("train", "validation", "test")
# `data.chat_template:` built-in names, one Jinja file each in tunelab/data/templates/.
BUILTIN_CHAT_TEMPLATES = ("chatml", "llama-3", "mistral", "gemma", "phi-3", "alpaca", "plain")
TOKENIZER_TEMPLATE = "tokenizer"  # the tokenizer's own chat template (the default)
JINJA_SUFFIXES = (".jinja", ".jinja2", ".j2")
_BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0"}
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
    # Constant fields set on every record of this source (e.g. {subject: anatomy}), so records
    # from several files of one split still know where they came from.
    add_fields: dict[str, Any] | None = None

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


_ORIGIN_KEYS = {"path", "hub", "records"}


def _source_shape(value) -> str:
    """'many' for a list of sources, 'one' for a single source. A list is one inline source
    (records) unless every item is a path string or a mapping with path/hub/records."""
    if isinstance(value, list) and value and all(
            isinstance(v, (str, SourceConfig)) or (isinstance(v, dict) and _ORIGIN_KEYS & set(v)) for v in value):
        return "many"
    return "one"


# `source:` and each `splits:` entry: one source, or a list of sources read in turn.
Sources = Annotated[Union[Annotated[SourceConfig, Tag("one")], Annotated[list[SourceConfig], Tag("many")]],
                    Discriminator(_source_shape)]


def verbalizer_key(text: str) -> str:
    """tunelab.metrics.labels.normalize_text (config imports nothing from tunelab), so two
    verbalizers that scoring would confuse are refused when the config is read."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text).split())


def check_label_synonyms(synonyms: dict[str, list[str]], labels: list[str], task: str) -> None:
    """Keys must be labels; no verbalizer (label or synonym) may stand for two labels."""
    unknown = [k for k in synonyms if k not in labels]
    if unknown:
        raise ValueError(f"task '{task}': label_synonyms names unknown label(s) {', '.join(map(repr, unknown))} "
                         f"(labels: {', '.join(labels)})")
    owner: dict[str, str] = {}
    # the labels first, so a synonym equal to another label is reported as such
    pairs = [(label, label) for label in labels] + [(lab, w) for lab in labels for w in synonyms.get(lab, [])]
    for label, word in pairs:
        key = verbalizer_key(word)
        if not key:
            raise ValueError(f"task '{task}': label synonym {word!r} of {label!r} has no letters or digits")
        if owner.setdefault(key, label) != label:
            raise ValueError(f"task '{task}': label synonym {word!r} stands for both {owner[key]!r} and {label!r}")


class TaskConfig(StrictModel):
    """One task: a source, how its fields map onto a template, and how prompts are written."""

    name: str
    kind: TaskKind
    # All records, split by ratios ...
    source: Sources | None = None
    # ... or given split files; splits missing here are carved from `train` by the ratios.
    splits: dict[SplitName, Sources] | None = None
    # template role -> source column(s); roles per kind are listed in docs/data.md.
    fields: dict[str, FieldRef] = Field(default_factory=dict)
    # classification: label value -> verbalizer ({0: negative, 1: positive}) or a list (index -> word).
    labels: dict[str, str] | list[str] | None = None
    # classification: label -> other answers that count as it ({Sci/Tech: [Science and Technology]}).
    label_synonyms: dict[str, list[str]] | None = None
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
    # Few-shot examples only from training records with the same value of this record field
    # (MMLU: `subject`, e.g. set by a source's add_fields).
    few_shot_group: str | None = None
    # random: drawn by a seeded hash; first: the first k in source order (lm-eval's first_n).
    few_shot_sampler: Literal["random", "first"] = "random"
    # Plain format: written after each few-shot answer (lm-eval's fewshot_delimiter).
    few_shot_delimiter: str = "\n\n"
    # lm-eval's target_delimiter. Set (e.g. " "), the plain prompt is lm-eval's layout: the system
    # prompt as written, shots as user + answer + few_shot_delimiter, and the user text with
    # nothing after it; every answer (target, choices) starts with the delimiter.
    target_delimiter: str | None = None
    # Apply the chat template (data.chat_template, else the tokenizer's own, when there is one);
    # false = the plain text format. Which template is chosen once for the data: data.chat_template.
    chat_template: bool = True
    # chat kind: which assistant turns are trained: every one (all) or only the final one (last);
    # a message's own `weight: 0|1` (or `train: true|false`) overrides this for that message.
    train_on: Literal["all", "last"] | None = None
    # Read at most this many records per source (first N, before splitting).
    limit: int | None = Field(default=None, ge=1)
    # Relative split weights overriding data.split for this task, e.g. {validation: 0}.
    ratios: dict[SplitName, float] | None = None
    # Mixture weight for `mixture.strategy: weights`.
    weight: float | None = Field(default=None, ge=0)
    # How the task is scored wherever it is scored (eval, validation, forgetting, the continual
    # matrix): defaults by kind in tunelab.config.evaluate (task_scoring), docs/evaluation.md.
    eval_kind: EvalKind | None = None
    metrics: list[str] | None = None
    max_new_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _name_is_a_file_name(cls, value):
        return check_path_name(value, "task name")  # evaluation writes <output>/<name>.examples.jsonl

    @field_validator("labels", mode="before")
    @classmethod
    def _label_keys_as_text(cls, value):
        # YAML reads `{0: negative}` with int keys; records may hold "0" or 0: compare as text.
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("label_synonyms", mode="before")
    @classmethod
    def _synonym_keys_as_text(cls, value):
        if isinstance(value, dict):  # `{Sci/Tech: science}`: one synonym may be given as a string
            return {str(k): [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("chat_template", mode="before")
    @classmethod
    def _apply_or_not(cls, value):
        # `chat_template: chatml` on a task: the template is chosen once, for the data (and the
        # tokenizer saved with the run), by data.chat_template.
        if isinstance(value, str) and value.strip().lower() not in _BOOL_WORDS:
            raise ValueError(f"a task's chat_template is true or false (apply a chat template or not), not "
                             f"{value!r}; choose the template itself with data.chat_template: {value}")
        return value

    @field_validator("ratios")
    @classmethod
    def _ratios_not_negative(cls, value):
        if value and any(v < 0 for v in value.values()):
            raise ValueError("split ratios must be 0 or more")
        return value

    @model_validator(mode="after")
    def _has_data(self):
        for key in ("labels", "label_synonyms"):
            if getattr(self, key) is not None and self.kind != "classification":
                raise ValueError(f"task '{self.name}': '{key}' applies to kind classification only")
        if self.kind in ("preference", "kto") and self.few_shot:  # preference data: tunelab.data.preference
            raise ValueError(f"task '{self.name}': few_shot does not apply to kind {self.kind}")
        if self.train_on is not None and self.kind != "chat":
            raise ValueError(f"task '{self.name}': 'train_on' applies to kind chat only")
        if self.label_synonyms and self.labels is not None:  # labels from the data: checked when built
            words = list(self.labels.values()) if isinstance(self.labels, dict) else list(self.labels)
            check_label_synonyms(self.label_synonyms, list(dict.fromkeys(words)), self.name)
        if self.source is None and not self.splits:
            raise ValueError(f"task '{self.name}' needs 'source' or 'splits'")
        if self.source is not None and self.splits:
            raise ValueError(f"task '{self.name}': give either 'source' or 'splits', not both")
        if self.splits and "train" not in self.splits and "test" not in self.splits and "validation" not in self.splits:
            raise ValueError(f"task '{self.name}': 'splits' is empty")
        check_scoring(self.name, self.kind, self.eval_kind, self.metrics)
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
    # Duplicated inputs across train/validation/test: removed from the earlier split (test stays
    # intact, so a duplicate is never trained on and then tested), only reported, or not checked.
    leak_check: Literal["report", "remove", "off"] = "remove"
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    # The chat template for every task (and for the tokenizer saved with the run): a built-in
    # name (BUILTIN_CHAT_TEMPLATES), a Jinja file (relative to the config file), or `tokenizer`
    # / null for the tokenizer's own.
    chat_template: str | None = None
    # The prepared (tokenised) tasks are kept and reused by later runs with the same inputs
    # (docs/data.md, "Cache"): true (under TUNELAB_HOME/data), false, or a folder.
    cache: bool | str = True
    # Processes preparing the data: worker processes that template, render and tokenise a long
    # task's chunks (data/stream.py), else the tokenizer's threads; null: every usable CPU, 1: one.
    num_proc: int | None = Field(default=None, ge=1)

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value):
        if value is None or value in (*BUILTIN_CHAT_TEMPLATES, TOKENIZER_TEMPLATE):
            return value
        if value.lower().endswith(JINJA_SUFFIXES) or "/" in value or "\\" in value:
            return value  # a file: read (and checked) when the data is prepared
        import difflib

        close = difflib.get_close_matches(value.lower(), [*BUILTIN_CHAT_TEMPLATES, TOKENIZER_TEMPLATE], n=1,
                                          cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"unknown chat template {value!r}; {hint}built-in: {', '.join(BUILTIN_CHAT_TEMPLATES)}; "
                         f"'{TOKENIZER_TEMPLATE}' for the tokenizer's own, or a Jinja file "
                         f"({', '.join(JINJA_SUFFIXES)})")

    @model_validator(mode="after")
    def _unique_task_names(self):
        seen = set()
        for task in self.tasks:
            if task.name in seen:
                raise ValueError(f"task name '{task.name}' is used twice")
            seen.add(task.name)
        return self
