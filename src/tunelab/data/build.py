"""One task from source to tokenised splits: read, template, split, few-shot, render, leak
check, tokenise with the over-length policy. Every record is counted on the way."""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.config.data import SPLIT_NAMES, SplitConfig, TaskConfig
from tunelab.data.errors import BadRecord, DataError, ErrorPolicy
from tunelab.data.example import Example, TaskData
from tunelab.data.leakage import leak_report, leaking_indices
from tunelab.data.render import (build_messages, compile_template, end_of_turn_id, has_chat_template,
                                 render_prompt, render_template)
from tunelab.data.sources import load_records
from tunelab.data.splits import split_indices, stable_key
from tunelab.data.tasks import classification, task_module
from tunelab.data.tokenize import apply_length_policy, bos_prefix, encode_batch, labels_for


@dataclass
class TaskContext:
    instruction: str
    labels: list[str] | None
    label_words: dict[str, str] | None


def build_task(task_cfg, tokenizer, config_dir=".", max_length: int = 1024, seed: int = 42, *,
               overlength: str = "truncate_left", on_error: str = "raise", split: SplitConfig | None = None,
               leak_check: str = "report", policy: ErrorPolicy | None = None) -> TaskData:
    """Build one task's train/validation/test examples (see tunelab.data.prepare for a config)."""
    task = TaskConfig.model_validate(task_cfg) if isinstance(task_cfg, dict) else task_cfg
    policy = policy or ErrorPolicy(on_error)
    skipped_before = len(policy.skipped)
    split = split or SplitConfig()
    module = task_module(task.kind)

    sources = {"all": task.source} if task.source is not None else dict(task.splits)
    for mapping in [task.fields, *(src.fields or {} for src in sources.values())]:
        unknown = sorted(set(mapping) - set(module.ROLES))
        if unknown:
            raise DataError(f"task '{task.name}': unknown field role(s) {', '.join(unknown)} for kind "
                            f"{task.kind}; its roles are: {', '.join(module.ROLES)}")
    raw = {name: load_records(src, config_dir, policy, task.limit) for name, src in sources.items()}
    # records read = usable records + lines that could not even be parsed (skip mode)
    n_read = sum(len(r) for r in raw.values()) + len(policy.skipped) - skipped_before
    ctx = _context(task, module, raw, sources)
    template = compile_template(task.template, f"task '{task.name}' template") if task.template else None

    drafts: dict[str, list] = {}
    for name, records in raw.items():
        fields = {**task.fields, **(sources[name].fields or {})}
        drafts[name] = []
        for record in records:
            try:
                parts = module.parts(record, task, fields, ctx)
                if template is not None:
                    variables = {**parts.variables, "instruction": ctx.instruction,
                                 "labels": ctx.labels or [], "record": record.data}
                    parts.user = render_template(template, variables, record, f"task '{task.name}' template")
            except BadRecord as exc:
                policy.bad(exc)
                continue
            drafts[name].append((record, parts))

    by_split = _assign_splits(task, drafts, split, seed)
    use_chat = task.chat_template and has_chat_template(tokenizer)
    separator = "" if task.kind == "completion" else "\n"
    prompts = {s: [_prompt(task, tokenizer, use_chat, separator, by_split, s, i, seed)
                   for i in range(len(items))] for s, items in by_split.items()}

    keys = {s: [parts.user for _, parts in items] for s, items in by_split.items()}
    leaks = leak_report(keys) if leak_check != "off" else {}
    removed = {s: set() for s in SPLIT_NAMES}
    if leak_check == "remove":
        removed = leaking_indices(keys)

    eot = end_of_turn_id(tokenizer, use_chat)
    bos = bos_prefix(tokenizer, use_chat)
    flat = [(s, i) for s in SPLIT_NAMES for i in range(len(by_split[s])) if i not in removed[s]]
    prompt_ids = encode_batch(tokenizer, [prompts[s][i] for s, i in flat])
    target_ids = encode_batch(tokenizer, [by_split[s][i][1].target for s, i in flat])

    splits = {s: [] for s in SPLIT_NAMES}
    counts = {s: {"kept": 0, "truncated": 0, "rejected": 0, "duplicates_removed": len(removed[s])}
              for s in SPLIT_NAMES}
    rejected = []
    for (s, i), p_ids, t_ids in zip(flat, prompt_ids, target_ids):
        record, parts = by_split[s][i]
        p_ids, t_ids = bos + p_ids, t_ids + [eot]
        kept, truncated, reason = apply_length_policy(p_ids, t_ids, max_length, overlength)
        if kept is None:
            counts[s]["rejected"] += 1
            rejected.append(f"{record.where}: {reason}")
            continue
        prompt_text = tokenizer.decode(kept, skip_special_tokens=False) if truncated else prompts[s][i]
        counts[s]["kept"] += 1
        counts[s]["truncated"] += int(truncated)
        splits[s].append(Example(
            task=task.name, split=s, source_index=record.index, prompt_text=prompt_text,
            target_text=parts.target, prompt_ids=kept, target_ids=t_ids, input_ids=kept + t_ids,
            labels=labels_for(kept, t_ids), references=list(parts.references), label=parts.label,
            choices=parts.choices, answer_index=parts.answer_index, truncated=truncated,
            source=record.where, user_text=parts.user, choice_texts=parts.choice_texts,
        ))
    skipped = policy.skipped[skipped_before:]
    totals = {k: sum(c[k] for c in counts.values()) for k in ("kept", "truncated", "rejected", "duplicates_removed")}
    all_counts = {"read": n_read, "skipped": len(skipped), **totals, "by_split": counts}
    return TaskData(name=task.name, kind=task.kind, splits=splits, labels=ctx.labels, counts=all_counts,
                    skipped=skipped, rejected=rejected, leaks=leaks)


def _context(task, module, raw, sources) -> TaskContext:
    labels = words = None
    if task.kind == "classification":
        words = classification.label_words(task)
        if words is not None:
            labels = list(dict.fromkeys(words.values()))
        else:  # labels taken from the data: every distinct value, numbers in numeric order
            values = set()
            for name, records in raw.items():
                col = {**task.fields, **(sources[name].fields or {})}.get("label", "label")
                for record in records:
                    try:
                        values.add(classification.raw_label(record, col))
                    except BadRecord:
                        pass  # reported when the record itself is read
            labels = sorted(values, key=lambda v: (0, int(v), v) if v.lstrip("-").isdigit() else (1, 0, v))
    instruction = task.instruction if task.instruction is not None else module.default_instruction(task, labels)
    return TaskContext(instruction=instruction, labels=labels, label_words=words)


def _assign_splits(task, drafts: dict[str, list], split: SplitConfig, seed: int) -> dict[str, list]:
    """Use given split files; carve the rest (or everything) by the normalised ratios."""
    ratios = {"train": split.train, "validation": split.validation, "test": split.test}
    ratios.update(task.ratios or {})
    out = {s: list(drafts.get(s, [])) for s in SPLIT_NAMES}
    if "all" in drafts:
        pool, targets = drafts["all"], list(SPLIT_NAMES)
    else:
        missing = [s for s in SPLIT_NAMES if s not in drafts]
        if "train" not in drafts or not missing:
            return out
        pool, targets = drafts["train"], ["train"] + missing
    carve = {s: ratios[s] for s in targets}
    if sum(carve.values()) <= 0:
        raise DataError(f"task '{task.name}': split ratios for {', '.join(targets)} are all zero")
    strata = None
    if task.kind == "classification" and split.stratify:
        strata = [parts.label for _, parts in pool]
    indices = split_indices(len(pool), carve, seed, task.name, strata)
    for s in targets:
        out[s] = [pool[i] for i in indices[s]]
    return out


def _prompt(task, tokenizer, use_chat, separator, by_split, s, i, seed) -> str:
    record, parts = by_split[s][i]
    shots = []
    if task.few_shot:
        pool = by_split["train"]
        if not pool:
            raise DataError(f"task '{task.name}': few_shot needs training examples to draw from")
        chosen, attempt = [], 0
        limit = min(task.few_shot, len(pool) - (1 if s == "train" else 0))
        # Hash-drawn indices: stable across processes; never the example itself.
        while len(chosen) < limit and attempt < 50 * task.few_shot + len(pool):
            j = int.from_bytes(stable_key(seed, task.name, "few-shot", s, i, attempt)[:8], "big") % len(pool)
            attempt += 1
            if pool[j][0] is record or j in chosen:
                continue
            chosen.append(j)
        shots = [(pool[j][1].user, pool[j][1].target) for j in chosen]
    messages = build_messages(task.system_prompt, shots, parts.history, parts.user)
    return render_prompt(tokenizer, messages, use_chat, separator)
