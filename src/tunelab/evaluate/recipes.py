"""Evaluation task specs: ready recipes for common dataset shapes, or any data-pipeline task.

An eval task is a data-pipeline task (a `data.tasks` entry: source, kind, fields, template...)
plus how to score it:
    eval_kind:  generate | loglikelihood | perplexity   (default from the data kind)
    metrics:    e.g. [rouge1, rouge2, rougeL, rougeLsum] | [accuracy] | [exact_match, token_f1] | [bleu]
    max_new_tokens, stop: generation overrides for this task
    split:      which split to score (default: the eval section's, "test")

Recipes write that spec for the shapes in ../shared/data; a user only gives the path:
    sst2=PATH          SST-2 TSV (sentence<TAB>label): classification from generated labels
    dialogsum=PATH     DialogSum folder (dev as train, test with 3 references): ROUGE
    mmlu=PATH          MMLU CSV folder (dev/ for few-shot, test/): log-likelihood of each option
    t0=PATH.jsonl      a T0 prompt/completion file: exact match, or ROUGE-L for summarisation
Any recipe with `eval_kind=perplexity` scores the perplexity of the reference answers instead
(held-out text given its prompt), e.g. `dialogsum=PATH,eval_kind=perplexity`.
Options after the path, comma separated: `mmlu=PATH,subjects=anatomy+marketing,few_shot=1`.
Splits use the data pipeline's defaults (seed 42, 80/10/10) so that the test split of a
single-file dataset is the same held-out part that a training config with the same data uses.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.config.base import ConfigError

EVAL_KEYS = ("eval_kind", "metrics", "max_new_tokens", "stop", "split", "recipe", "path")
MMLU_COLUMNS = ["question", "A", "B", "C", "D", "answer"]
# T0 templates whose answer is free text: scored with ROUGE-L; the others have one short answer.
T0_FREE_TEXT = ("samsum", "xsum", "common_gen")
DEFAULT_METRICS = {
    "classification": ["accuracy"],
    "summarization": ["rouge1", "rouge2", "rougeL", "rougeLsum"],
    "translation": ["bleu"],
    "qa": ["exact_match", "token_f1"],
    "multiple_choice": ["acc", "acc_norm", "acc_bytes"],
    "instruction": ["rougeL"],
    "completion": ["exact_match", "rougeL"],
    "chat": ["rougeL"],
}


def _path(path: str | None, config_dir: str, recipe: str) -> Path:
    if not path:
        raise ConfigError(f"recipe '{recipe}' needs a path, e.g. {recipe}=../shared/data/{recipe}")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = Path(config_dir) / p
    if not p.exists():
        raise ConfigError(f"recipe '{recipe}': {p} does not exist")
    return p


def sst2(path, config_dir=".", name="sst2", **opts) -> dict:
    p = _path(path, config_dir, "sst2")
    if p.is_dir():
        p = p / "sst2_glue_validation.tsv"
    return {"name": name, "kind": "classification", "source": str(p),
            "fields": {"text": "sentence", "label": "label"}, "labels": {0: "negative", 1: "positive"},
            "eval_kind": "generate", "metrics": ["accuracy"], "max_new_tokens": 8, **opts}


def dialogsum(path, config_dir=".", name="dialogsum", **opts) -> dict:
    p = _path(path, config_dir, "dialogsum")
    return {"name": name, "kind": "summarization", "fields": {"text": "dialogue", "target": "summary"},
            "splits": {"train": str(p / "dialogsum.dev.jsonl"),
                       "test": {"path": str(p / "dialogsum.test.jsonl"),
                                "fields": {"target": ["summary1", "summary2", "summary3"]}}},
            "eval_kind": "generate", "metrics": ["rouge1", "rouge2", "rougeL", "rougeLsum"],
            "max_new_tokens": 64, **opts}


def mmlu(path, config_dir=".", name="mmlu", subjects: str | list | None = None, few_shot: int = 0, **opts) -> dict:
    p = _path(path, config_dir, "mmlu")
    if isinstance(subjects, str):
        subjects = [s for s in subjects.replace("+", " ").split() if s]
    test = [str(p / "test" / f"{s}_test.csv") for s in subjects] if subjects else [str(p / "test" / "*.csv")]
    for f in test:
        if "*" not in f and not Path(f).exists():
            raise ConfigError(f"recipe 'mmlu': {f} does not exist (subjects: {', '.join(subjects or [])})")
    test_sources = [{"path": f, "columns": MMLU_COLUMNS} for f in test]
    if len(test_sources) > 1:
        raise ConfigError("recipe 'mmlu': give one subject or none (all subjects); "
                          "for several subjects add one task per subject")
    return {"name": name, "kind": "multiple_choice", "fields": {"choices": ["A", "B", "C", "D"]},
            "answer_format": "text", "few_shot": int(few_shot), "ratios": {"validation": 0},
            "splits": {"train": {"path": str(p / "dev" / "*.csv"), "columns": MMLU_COLUMNS},
                       "test": test_sources[0]},
            "eval_kind": "loglikelihood", "metrics": ["acc", "acc_norm", "acc_bytes"], **opts}


def t0(path, config_dir=".", name=None, **opts) -> dict:
    p = _path(path, config_dir, "t0")
    free_text = p.stem.startswith(T0_FREE_TEXT)
    return {"name": name or f"t0_{p.stem.split('_')[0]}", "kind": "completion", "source": str(p),
            "strip_suffix": ["<|endoftext|>"], "eval_kind": "generate",
            "metrics": ["rougeL"] if free_text else ["exact_match"],
            "max_new_tokens": 48 if free_text else 16, **opts}


RECIPES = {"sst2": sst2, "dialogsum": dialogsum, "mmlu": mmlu, "t0": t0}


def parse_task_ref(text: str) -> dict:
    """`mmlu=PATH,subjects=anatomy,few_shot=1` -> {"recipe": "mmlu", "path": PATH, "subjects": ...}."""
    if "=" not in text:
        raise ConfigError(f"task '{text}': expected RECIPE=PATH (recipes: {', '.join(RECIPES)}) or a YAML file")
    recipe, rest = text.split("=", 1)
    path, *options = rest.split(",")
    spec = {"recipe": recipe.strip(), "path": path.strip()}
    for opt in options:
        if "=" not in opt:
            raise ConfigError(f"task '{text}': option '{opt}' is not key=value")
        key, value = opt.split("=", 1)
        spec[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return spec


def expand_task(task: str | dict, config_dir: str = ".", data_tasks: dict | None = None) -> dict:
    """Any task reference -> a full eval task spec (data task fields + EVAL_KEYS).

    A bare name (no `=`) names a task of the training config's data.tasks (`data_tasks`): the
    run's own task, built with the same split, so its test split is the held-out one."""
    if isinstance(task, str) and "=" not in task and not task.endswith((".yaml", ".yml")):
        if not data_tasks or task not in data_tasks:
            known = ", ".join(data_tasks or {}) or "none"
            raise ConfigError(f"task '{task}': not a RECIPE=PATH and not a data task of the config (data tasks: {known})")
        task = dict(data_tasks[task])
    elif isinstance(task, dict) and "kind" not in task and "recipe" not in task and task.get("name") in (data_tasks or {}):
        task = {**data_tasks[task["name"]], **task}  # {name: sst2, max_new_tokens: 8}: a data task + eval settings
    if isinstance(task, str):
        if task.endswith((".yaml", ".yml")) and "=" not in task:
            import yaml

            path = Path(config_dir) / task if not Path(task).is_absolute() else Path(task)
            if not path.exists():
                raise ConfigError(f"task file {path} does not exist")
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            return expand_task(loaded, str(path.parent))
        task = parse_task_ref(task)
    spec = dict(task)
    if "recipe" in spec:
        name = spec.pop("recipe")
        if name not in RECIPES:
            import difflib

            close = difflib.get_close_matches(name, list(RECIPES), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown eval recipe '{name}'{hint} (recipes: {', '.join(RECIPES)})")
        path = spec.pop("path", None)
        user_metrics = "metrics" in spec
        spec = RECIPES[name](path, config_dir, **spec)
        if spec["eval_kind"] == "perplexity" and not user_metrics:
            spec["metrics"] = ["perplexity", "bits_per_byte"]
    if "name" not in spec or "kind" not in spec:
        raise ConfigError(f"eval task {spec!r}: needs 'name' and 'kind' (or 'recipe' and 'path')")
    for key in ("metrics", "stop"):
        if isinstance(spec.get(key), str):  # from `metrics=rougeL+rouge2` on the command line
            spec[key] = [m for m in spec[key].replace("+", " ").split() if m]
    spec.setdefault("eval_kind", "loglikelihood" if spec["kind"] == "multiple_choice" else "generate")
    default = ["perplexity", "bits_per_byte"] if spec["eval_kind"] == "perplexity" else DEFAULT_METRICS[spec["kind"]]
    spec.setdefault("metrics", default)
    return spec


def data_task_config(spec: dict) -> dict:
    """The data-pipeline part of a spec (what tunelab.data.build_task validates)."""
    return {k: v for k, v in spec.items() if k not in EVAL_KEYS}
