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

from tunelab.config.base import ConfigError, check_path_name
from tunelab.config.scoring import task_scoring

# Keys of an eval task spec that are not data-task keys (eval_kind, metrics, max_new_tokens and stop
# are: a task carries its own scoring, tunelab.config.scoring).
EVAL_KEYS = ("split", "recipe", "path")
MMLU_COLUMNS = ["question", "A", "B", "C", "D", "answer"]
# T0 templates whose answer is free text: scored with ROUGE-L; the others have one short answer.
T0_FREE_TEXT = ("samsum", "xsum", "common_gen")


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


# lm-evaluation-harness's MMLU prompt, key for key (lm_eval/tasks/mmlu/default/_default_template_yaml
# and mmlu_<subject>.yaml): description, doc_to_text, target_delimiter " " (so " A" is scored after
# "Answer:"), fewshot_delimiter "\n\n", first_n few-shot sampler, no chat template.
LM_EVAL_MMLU = {
    "system_prompt": "The following are multiple choice questions (with answers) about "
                     "{{ record.subject | replace('_', ' ') }}.\n\n",
    "template": "{{ question.strip() }}\nA. {{ choices[0] }}\nB. {{ choices[1] }}\nC. {{ choices[2] }}"
                "\nD. {{ choices[3] }}\nAnswer:",
    "answer_format": "letter", "target_delimiter": " ", "few_shot_delimiter": "\n\n",
    "few_shot_sampler": "first", "chat_template": False,
}
MMLU_STYLES = ("default", "lm_eval")


def mmlu(path, config_dir=".", name="mmlu", subjects: str | list | None = None, few_shot: int = 0,
         style: str = "default", **opts) -> dict:
    """One task over several subjects (default: every `test/<subject>_test.csv`); every record
    carries its `subject`, and few-shot examples come from the same subject's dev file."""
    p = _path(path, config_dir, "mmlu")
    if style not in MMLU_STYLES:
        raise ConfigError(f"recipe 'mmlu': style '{style}' is not one of {', '.join(MMLU_STYLES)}")
    if isinstance(subjects, str):
        subjects = [s for s in subjects.replace("+", " ").split() if s]
    available = sorted(f.name[: -len("_test.csv")] for f in (p / "test").glob("*_test.csv"))
    subjects = list(dict.fromkeys(subjects or available))
    missing = [s for s in subjects if s not in available]
    if missing or not subjects:
        raise ConfigError(f"recipe 'mmlu': no {p / 'test'}/<subject>_test.csv for {', '.join(missing) or 'any subject'} "
                          f"(subjects there: {', '.join(available) or 'none'})")

    def source(split: str, subject: str) -> dict:
        return {"path": str(p / split / f"{subject}_{split}.csv"), "columns": MMLU_COLUMNS,
                "add_fields": {"subject": subject}}

    splits = {"test": [source("test", s) for s in subjects]}
    dev = [source("dev", s) for s in subjects if (p / "dev" / f"{s}_dev.csv").exists()]
    if dev:
        splits["train"] = dev
    spec = {"name": name, "kind": "multiple_choice", "fields": {"choices": ["A", "B", "C", "D"]},
            "answer_format": "text", "few_shot": int(few_shot), "few_shot_group": "subject",
            "ratios": {"validation": 0}, "splits": splits,
            "eval_kind": "loglikelihood", "metrics": ["acc", "acc_norm", "acc_bytes"]}
    if style == "lm_eval":
        spec.update(LM_EVAL_MMLU)
    return {**spec, **opts}


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
        if spec.get("eval_kind") == "perplexity" and not user_metrics:
            spec.pop("metrics", None)  # the recipe's generation metrics do not apply: perplexity's own
    if "name" not in spec or "kind" not in spec:
        raise ConfigError(f"eval task {spec!r}: needs 'name' and 'kind' (or 'recipe' and 'path')")
    for key in ("metrics", "stop"):
        if isinstance(spec.get(key), str):  # from `metrics=rougeL+rouge2` on the command line
            spec[key] = [m for m in spec[key].replace("+", " ").split() if m]
    scoring = task_scoring(spec["kind"], spec.get("eval_kind"), spec.get("metrics"))
    spec["eval_kind"], spec["metrics"] = scoring.eval_kind, scoring.metrics  # written into results.json
    check_path_name(str(spec["name"]), "eval task name")  # it becomes <output>/<name>.examples.jsonl
    return spec


def data_task_config(spec: dict) -> dict:
    """The data-pipeline part of a spec (what tunelab.data.build_task validates)."""
    return {k: v for k, v in spec.items() if k not in EVAL_KEYS}
