"""Did-you-mean for unknown config keys.

A key can be unknown because it is misspelt (`seeed`), because it belongs to another section
(`lr` at the top level, `max_length` under `train:`), or because it is the name Hugging Face's
Trainer, TRL, PEFT or bitsandbytes give the same setting (`learning_rate`). The suggestion is
fuzzy-matched against all three, so `learning_rat` still finds `lr`. Where a foreign name's
value decides our key (TRL's `loss_type: hinge` is `objective: dpo` with `preference.dpo_loss:
hinge`), the value picks it (CHOICES); a foreign setting tunelab has no key for says so (NOT_OURS)
instead of being matched to a key one letter away.

Where a key is used is read from the whole config (ExperimentConfig), which tunelab.config.schema
registers here (`use_schema`) as it is defined: this module imports no config module, so the
sections (config/base.py's StrictModel) can call `did_you_mean` without an import circle.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections import defaultdict
from functools import lru_cache

from pydantic import BaseModel

HF = "Hugging Face's"
# Foreign name -> (our dotted key, or "key: value" when a flag maps onto a choice; whose name).
# Paths are from the top of the config; "[]" is any list item, "<name>" any mapping key.
FOREIGN: dict[str, tuple[str, str]] = {
    # transformers TrainingArguments (and TRL's SFTConfig, which extends it)
    "learning_rate": ("train.lr", HF),
    "per_device_train_batch_size": ("train.batch_size", HF),
    "train_batch_size": ("train.batch_size", HF),
    "per_device_eval_batch_size": ("train.eval_batch_size", HF),
    "num_train_epochs": ("train.epochs", HF),
    "gradient_accumulation_steps": ("train.grad_accum", HF),
    "lr_scheduler_type": ("train.scheduler", HF),
    "optim": ("train.optimizer", HF),
    "adam_beta1": ("train.betas", HF),
    "adam_beta2": ("train.betas", HF),
    "adam_epsilon": ("train.eps", HF),
    "logging_steps": ("train.log_every", HF),
    "eval_steps": ("train.eval_every", HF),
    "eval_strategy": ("train.eval_every", HF),
    "evaluation_strategy": ("train.eval_every", HF),
    "save_steps": ("train.checkpoint_every", HF),
    "save_strategy": ("train.checkpoint_every", HF),
    "save_total_limit": ("train.keep_last", HF),
    "load_best_model_at_end": ("train.keep_best", HF),
    "metric_for_best_model": ("train.early_stopping.metric", HF),
    "greater_is_better": ("train.early_stopping.mode", HF),
    "early_stopping_patience": ("train.early_stopping.patience", HF),
    "early_stopping_threshold": ("train.early_stopping.min_delta", HF),
    "bf16": ("train.precision: bf16", HF),
    "fp16": ("train.precision: fp16", HF),
    "tensorboard": ("train.report_to: [tensorboard]", "tunelab's earlier"),
    "run_name": ("name", HF),
    "data_seed": ("data.split.seed", HF),
    "resume_from_checkpoint": ("--resume", HF),
    # TRL SFTConfig / common fine-tuning scripts
    "max_seq_length": ("data.max_length", "TRL's"),
    "max_seq_len": ("data.max_length", "a common"),
    "model_max_length": ("data.max_length", HF),
    "cutoff_len": ("data.max_length", "LLaMA-Factory's"),
    "sequence_len": ("data.max_length", "axolotl's"),
    "completion_only_loss": ("train.include_prompt_loss", "TRL's (inverted)"),
    "assistant_only_loss": ("train.include_prompt_loss", "TRL's (inverted)"),
    "dataset_name": ("data.tasks[].source.hub", HF),
    "dataset_text_field": ("data.tasks[].fields", "TRL's"),
    "train_file": ("data.tasks[].splits.train", HF),
    "validation_file": ("data.tasks[].splits.validation", HF),
    "test_file": ("data.tasks[].splits.test", HF),
    # model loading
    "model_name_or_path": ("model.name", HF),
    "pretrained_model_name_or_path": ("model.name", HF),
    "base_model": ("model.name", "axolotl's"),
    "model_name": ("model.name", "a common"),
    "model_id": ("model.name", "a common"),
    "model_revision": ("model.revision", HF),
    "torch_dtype": ("model.dtype", HF),
    # PEFT LoraConfig and the lora_* names of training scripts
    "lora_r": ("train.lora.r", "axolotl's"),
    "lora_rank": ("train.lora.r", "a common"),
    "lora_alpha": ("train.lora.alpha", "PEFT's"),
    "lora_dropout": ("train.lora.dropout", "PEFT's"),
    "lora_target_modules": ("train.lora.target_modules", "axolotl's"),
    "use_dora": ("train.method: dora", "PEFT's"),
    "peft_type": ("train.method", "PEFT's"),
    # bitsandbytes (QLoRA)
    "load_in_4bit": ("train.method: qlora", "bitsandbytes'"),
    "load_in_8bit": ("train.qlora.bits: 8", "bitsandbytes'"),
    "bnb_4bit_quant_type": ("train.qlora.quant_type", "bitsandbytes'"),
    "bnb_4bit_use_double_quant": ("train.qlora.double_quant", "bitsandbytes'"),
    # preference tuning (TRL's DPOConfig/KTOConfig/CPOConfig, LLaMA-Factory's pref_*, axolotl's rl_*)
    "dpo_beta": ("train.preference.beta", "a common"),
    "pref_beta": ("train.preference.beta", "LLaMA-Factory's"),
    "rl_beta": ("train.preference.beta", "axolotl's"),
    "orpo_alpha": ("train.preference.beta", "axolotl's"),  # ORPO's lambda is beta here, as in TRL's ORPOConfig
    "kto_chosen_weight": ("train.preference.desirable_weight", "LLaMA-Factory's"),
    "kto_rejected_weight": ("train.preference.undesirable_weight", "LLaMA-Factory's"),
    "kto_desirable_weight": ("train.preference.desirable_weight", "axolotl's"),
    "kto_undesirable_weight": ("train.preference.undesirable_weight", "axolotl's"),
    "max_prompt_length": ("data.max_length", "TRL's"),  # ours holds the prompt and the longer answer
    "max_completion_length": ("data.max_length", "TRL's"),
    # with a value these three name the choice (CHOICES); without a known one, where choices live
    "loss_type": ("train.objective", "TRL's"),
    "pref_loss": ("train.objective", "LLaMA-Factory's"),
    "rl": ("train.objective", "axolotl's"),
}
# Foreign names whose *value* says which of our keys is meant: TRL's `loss_type: ipo` is our
# `objective: ipo`, but `loss_type: hinge` is DPO with `preference.dpo_loss: hinge` (our objective
# defaults to sft, so a hint naming only dpo_loss would leave the run an SFT run). A value not
# listed falls back to the name's FOREIGN entry, or to the usual search when it has none.
_DPO_LOSS = {v: ("train.objective: dpo", f"train.preference.dpo_loss: {v}") for v in ("sigmoid", "hinge", "robust")}
_OBJECTIVE = {v: (f"train.objective: {v}",) for v in ("sft", "dpo", "ipo", "simpo", "orpo", "kto")}
CHOICES: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    "loss_type": ("TRL's", {**_DPO_LOSS, **_OBJECTIVE}),
    "pref_loss": ("LLaMA-Factory's", {**_DPO_LOSS, **_OBJECTIVE}),
    "rl": ("axolotl's", _OBJECTIVE),
    "stage": ("LLaMA-Factory's", {v: (f"train.objective: {v}",) for v in ("sft", "dpo", "kto")}),
}
# Foreign preference settings tunelab has no key for: said so, rather than fuzzy-matched onto a
# key that means something else (cpo_alpha is one letter from orpo_alpha, which is our beta).
_REFERENCE = ("the reference is the starting model (an adapter switched off, or the starting weights), "
              "none for simpo and orpo")
NOT_OURS: dict[str, tuple[str, str]] = {
    "cpo_alpha": ("TRL's", "tunelab's simpo is CPO's loss with cpo_alpha 0, and no NLL term is added"),
    "rpo_alpha": ("TRL's", "no NLL term is added to dpo; orpo has one"),
    "pref_ftx": ("LLaMA-Factory's", "no NLL term is added to dpo; orpo has one"),
    "ref_model": ("TRL's", _REFERENCE),
    "reference_free": ("TRL's", _REFERENCE),
    "precompute_ref_log_probs": ("TRL's", "full fine-tuning computes the reference's log-probs once by itself"),
}


def not_ours(key: str) -> str | None:
    """Why a foreign setting has no tunelab key (one clause for the error line), or None."""
    norm = str(key).strip().lower().replace("-", "_")
    if norm not in NOT_OURS:
        return None
    whose, why = NOT_OURS[norm]
    return f"{whose} {norm} has no tunelab key: {why} (docs/preference.md)"


# A misspelling must be this close (difflib ratio) to a key of the same section, or to a foreign
# name or another section's key; the second bar is higher because a wrong guess there misleads more.
LOCAL_CUTOFF = 0.6
OTHER_CUTOFF = 0.75


class _Tree:
    """Where each config class sits (dotted paths) and where each key name is used."""

    def __init__(self, root: type[BaseModel]):
        self.class_paths: dict[type, list[str]] = defaultdict(list)
        self.key_paths: dict[str, list[str]] = defaultdict(list)
        self._walk(root, "")

    def _walk(self, cls: type[BaseModel], prefix: str) -> None:
        self.class_paths[cls].append(prefix)
        for name, field in cls.model_fields.items():
            key = field.alias or name
            path = f"{prefix}.{key}" if prefix else key
            self.key_paths[key].append(path)
            for sub, suffix in _nested_models(field.annotation):
                if path.count(".") < 8:  # no recursive sections today; never loop if one appears
                    self._walk(sub, path + suffix)


def _nested_models(annotation, suffix: str = ""):
    """(model class, path suffix) for each config section inside a field's type."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        yield from _nested_models(args[0], suffix)
    elif origin in (list, tuple, set):
        for arg in args:
            yield from _nested_models(arg, suffix + "[]")
    elif origin is dict and args:
        yield from _nested_models(args[-1], suffix + ".<name>")
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _nested_models(arg, suffix)


_SCHEMA: list[type[BaseModel]] = []  # the whole config, once tunelab.config.schema has registered it


def use_schema(root: type[BaseModel]) -> None:
    """Take `root` (the whole config) as the tree every did-you-mean is looked up in."""
    _SCHEMA[:] = [root]
    _tree.cache_clear()


@lru_cache(maxsize=1)
def _tree() -> _Tree:
    if not _SCHEMA:  # tunelab.config imports the schema, so this only means a broken install
        raise RuntimeError("tunelab.config.schema was not imported: no config tree for the did-you-mean")
    return _Tree(_SCHEMA[0])


def _shared_depth(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split("."), b.split(".")):
        if x != y:
            break
        n += 1
    return n


def _relative(target: str, here: list[str]) -> str:
    """`train.lora.r` seen from `train` is `lora.r`; from elsewhere the whole path."""
    for prefix in sorted(here, key=len, reverse=True):
        if prefix and target.startswith(prefix + "."):
            return target[len(prefix) + 1:]
    return target


def _quoted(target: str, here: list[str], value: str = "") -> str:
    shown = f"'{_relative(target, here)}" + (f": {value}'" if value else "'")
    if "." not in target and "" not in here:  # `seed` under `model:` means the top-level seed
        shown += " at the top level"
    return shown


def _nearest(paths: list[str], here: list[str]) -> str:
    """Of several places a key is used, the one closest to where the user wrote it."""
    return max(paths, key=lambda p: (max((_shared_depth(p, h) for h in here), default=0), -p.count(".")))


def did_you_mean(cls: type[BaseModel], key: str, known: set[str], value=None) -> str | None:
    """The did-you-mean text for an unknown `key` of section `cls` (None when nothing is close);
    `value`, what the user gave it, picks the key of a foreign name that maps onto a choice."""
    tree = _tree()
    here = tree.class_paths.get(cls) or []
    norm = str(key).strip().lower().replace("-", "_")
    if norm in known:
        return f"'{norm}'"
    choice = _choice_hint(norm, value, here)
    if choice:
        return choice
    if norm in FOREIGN:
        return _foreign_hint(norm, here)
    if here and norm in tree.key_paths:
        return _quoted(_nearest(tree.key_paths[norm], here), here)
    scored = [(_ratio(norm, k) + 0.01, "local", k) for k in known]  # + 0.01: a tie goes to this section
    scored = [s for s in scored if s[0] >= LOCAL_CUTOFF]
    others = list(FOREIGN) + (list(tree.key_paths) if here else [])
    scored += [(r, "other", k) for k in others if (r := _ratio(norm, k)) >= OTHER_CUTOFF and k not in known]
    if not scored:
        return None
    _, kind, best = max(scored)
    if kind == "local":
        return f"'{best}'"
    if best in FOREIGN:
        return _foreign_hint(best, here)
    return _quoted(_nearest(tree.key_paths[best], here), here)


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def _choice_hint(name: str, value, here: list[str]) -> str | None:
    """`loss_type: ipo` -> "'objective: ipo' (TRL's loss_type: ipo)"; None when the value is not one
    CHOICES knows (a list, a number, an option tunelab does not have)."""
    whose, by_value = CHOICES.get(name, ("", {}))
    targets = by_value.get(value.strip().lower()) if isinstance(value, str) else None
    if not targets:
        return None
    shown = [_quoted(key, here, choice) for key, _, choice in (t.partition(": ") for t in targets)]
    return f"{' with '.join(shown)} ({whose} {name}: {value})"


def _foreign_hint(name: str, here: list[str]) -> str:
    target, whose = FOREIGN[name]
    if target.startswith("--"):
        return f"the command-line flag {target} ({whose} {name})"
    key, _, value = target.partition(": ")
    return f"{_quoted(key, here, value)} ({whose} {name})"
