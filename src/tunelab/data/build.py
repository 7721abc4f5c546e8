"""One task from source to tokenised splits: read, template, split, few-shot, render, leak
check, tokenise with the over-length policy. Every record is counted on the way.

Most tasks take data/stream.py's bounded-memory path (`streamable`), built from the pieces here
(`Drafter`, `render_segments`, `add_example`); this module's own path holds a task's records
while it is prepared: tasks with few-shot examples (drawn from the whole training split) and
preference pairs, and the reference the streamed path is tested byte for byte against."""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.config.data import SPLIT_NAMES, SplitConfig, TaskConfig, check_label_synonyms
from tunelab.data.errors import BadRecord, DataError, ErrorPolicy
from tunelab.data.example import TaskData
from tunelab.data.fewshot import ShotPicker
from tunelab.data.leakage import content_key, leak_report, leaking_indices, normalised_keys
from tunelab.data.preference import PREFERENCE_KINDS, preference_segments, preference_tokenised
from tunelab.data.conversation import ChatFormat, conversation_segments
from tunelab.data.render import build_messages, compile_template, has_chat_template, render_template
from tunelab.data.sources import load_records
from tunelab.data.splits import split_indices
from tunelab.data.tasks import classification, task_module
from tunelab.data.templates import template_source
from tunelab.data.progress import DataProgress
from tunelab.data.table import TableBuilder
from tunelab.data.tokenize import IGNORE_INDEX, apply_length_policy, bos_prefix, encode_batch

TOKENIZE_CHUNK = 8192  # examples tokenised per batched call: their token lists die with the chunk
STREAMING = True  # tasks that can be are prepared a chunk at a time (data/stream.py); tests compare both ways


@dataclass
class TaskContext:
    instruction: str
    labels: list[str] | None
    label_words: dict[str, str] | None
    label_synonyms: dict[str, list[str]] | None = None  # every label -> its synonyms (classification)


def build_task(task_cfg, tokenizer, config_dir=".", max_length: int = 1024, seed: int = 42, *,
               overlength: str = "truncate_left", on_error: str = "raise", split: SplitConfig | None = None,
               leak_check: str = "remove", policy: ErrorPolicy | None = None,
               chat_template: str | None = None, progress=None, num_proc: int | None = None) -> TaskData:
    """Build one task's train/validation/test examples (see tunelab.data.prepare for a config).
    `chat_template`: data.chat_template's choice (a built-in name or Jinja file; None: the tokenizer's).
    `progress`: a DataProgress (data/progress.py) for the bars of a long preparation.
    `num_proc`: worker processes of a long bounded-memory preparation (data/stream.py); None: the
    enclosing `tokenizer_threads`' data.num_proc, else every usable CPU."""
    task = TaskConfig.model_validate(task_cfg) if isinstance(task_cfg, dict) else task_cfg
    policy = policy or ErrorPolicy(on_error)
    skipped_before = len(policy.skipped)
    split = split or SplitConfig()
    module = task_module(task.kind)

    given = {"all": task.source} if task.source is not None else dict(task.splits)
    # every split (or `all`) is a list of sources, read in turn
    sources = {name: list(srcs) if isinstance(srcs, list) else [srcs] for name, srcs in given.items()}
    for mapping in [task.fields, *(src.fields or {} for srcs in sources.values() for src in srcs)]:
        unknown = sorted(set(mapping) - set(module.ROLES))
        if unknown:
            raise DataError(f"task '{task.name}': unknown field role(s) {', '.join(unknown)} for kind "
                            f"{task.kind}; its roles are: {', '.join(module.ROLES)}")
    progress = progress or DataProgress(enabled=False)
    if streamable(task):  # records never all held at once: data/stream.py
        from tunelab.data.stream import build_streamed

        return build_streamed(task, module, sources, tokenizer, config_dir, max_length, seed, overlength=overlength,
                              split=split, leak_check=leak_check, policy=policy, chat_template=chat_template,
                              progress=progress, num_proc=num_proc)
    raw = _read(task, sources, config_dir, policy, progress)
    # records read = usable records + lines that could not even be parsed (skip mode)
    n_records = sum(len(r) for loaded in raw.values() for _, r in loaded)
    n_read = n_records + len(policy.skipped) - skipped_before
    ctx = context(task, module, ((src, r) for loaded in raw.values() for src, records in loaded for r in records))
    bar = progress.stage(f"{task.name}: templating", 2 * n_records)  # drafts, then rendering
    drafts = _drafts(task, module, raw, ctx, policy, bar)
    by_split = _assign_splits(task, drafts, split, seed)
    fmt = chat_format(task, tokenizer, chat_template, config_dir)
    preference = task.kind in PREFERENCE_KINDS  # pairs / unpaired answers: data/preference.py
    segments = preference_segments(fmt, by_split, policy) if preference else \
        _segments(task, fmt, drafts, by_split, seed, policy, bar)
    bar.close()
    del raw, drafts  # by_split holds what is left to tokenise (and _tokenised frees it as it goes)

    bar = progress.stage(f"{task.name}: leak check", None)
    keys = {s: [leak_text(parts) for _, parts in items] for s, items in by_split.items()}
    normalised = normalised_keys(keys) if leak_check != "off" else {}
    leaks = leak_report(keys, normalised) if leak_check != "off" else {}
    removed = {s: set() for s in SPLIT_NAMES}
    if leak_check == "remove":  # a record already skipped (its chat template failed) counts once
        found = leaking_indices(keys, normalised)
        removed = {s: {i for i in found[s] if segments[s][i] is not None} for s in found}
    del keys, normalised
    bar.close()
    splits, counts, rejected = (
        preference_tokenised(task, fmt, by_split, segments, removed, max_length, overlength) if preference else
        _tokenised(task, fmt, by_split, segments, removed, max_length, overlength, progress))
    return task_data(task, ctx, fmt, policy.skipped[skipped_before:], n_read, splits, counts, rejected, leaks)


def task_data(task, ctx, fmt, skipped: list, n_read: int, splits, counts: dict, rejected: list, leaks) -> TaskData:
    """The prepared task and its counts: records read, this task's skipped lines, and the kept,
    truncated, rejected and duplicate examples summed over the splits (`by_split` keeps each)."""
    totals = {k: sum(c[k] for c in counts.values()) for k in ("kept", "truncated", "rejected", "duplicates_removed")}
    all_counts = {"read": n_read, "skipped": len(skipped), **totals, "by_split": counts}
    return TaskData(name=task.name, kind=task.kind, splits=splits, labels=ctx.labels, counts=all_counts,
                    skipped=skipped, rejected=rejected, leaks=leaks, label_synonyms=ctx.label_synonyms,
                    chat_template=fmt.describe(task.chat_template))


def streamable(task) -> bool:
    """Whether a task is prepared a chunk at a time (data/stream.py). Few-shot examples are drawn
    from the whole training split's texts, and preference pairs are not tables (data/preference.py):
    those tasks hold their records while they are prepared."""
    return STREAMING and not task.few_shot and task.kind not in PREFERENCE_KINDS


def _read(task, sources, config_dir, policy, progress) -> dict[str, list]:
    """(source, records) of every source, split by split (or `all`)."""
    bar = progress.stage(f"{task.name}: reading", None)
    raw = {}
    for name, srcs in sources.items():
        raw[name] = []
        for src in srcs:
            raw[name].append((src, load_records(src, config_dir, policy, task.limit)))
            bar.update(len(raw[name][-1][1]))
    bar.close()
    return raw


def chat_format(task, tokenizer, choice, config_dir) -> ChatFormat:
    template = template_source(choice, config_dir) if task.chat_template else None
    use_chat = bool(task.chat_template and (template is not None or has_chat_template(tokenizer)))
    lm_eval_layout = task.target_delimiter is not None
    return ChatFormat(tokenizer, use_chat, template, choice if template is not None else None,
                      separator="" if task.kind == "completion" or lm_eval_layout else "\n",
                      verbatim_system=lm_eval_layout, shot_delimiter=task.few_shot_delimiter)


def leak_text(parts) -> str:
    """The input the leak check compares: the user message, or a chat's whole conversation
    before its final answer (two chats that both end with "Thanks!" are not duplicates)."""
    if parts.turns is None:
        return parts.user
    return "\n".join(parts.user if i == parts.user_index else m["content"] for i, m in enumerate(parts.turns[:-1]))


class Drafter:
    """One record -> its Parts: the kind's layout, the user templates, the target delimiter
    (BadRecord when the record cannot be used). Templates are compiled once per task."""

    def __init__(self, task, module, ctx: TaskContext):
        self.task, self.module, self.ctx = task, module, ctx
        self.template = compile_template(task.template, f"task '{task.name}' template") if task.template else None
        # A system prompt is a template only when it uses Jinja syntax: plain text stays byte for
        # byte (Jinja would normalise its line endings).
        system = task.system_prompt
        self.system_template = (compile_template(system, f"task '{task.name}' system_prompt")
                                if system and any(m in system for m in ("{{", "{%", "{#")) else None)

    def fields(self, src) -> dict:
        return {**self.task.fields, **(src.fields or {})}

    def draft(self, record, fields: dict):
        task, ctx = self.task, self.ctx
        parts = self.module.parts(record, task, fields, ctx)
        variables = {**parts.variables, "instruction": ctx.instruction, "labels": ctx.labels or [],
                     "record": record.data}
        if self.template is not None:
            parts.user = render_template(self.template, variables, record, f"task '{task.name}' template")
        parts.system = task.system_prompt if self.system_template is None else render_template(
            self.system_template, variables, record, f"task '{task.name}' system_prompt", allow_empty=True)
        if task.target_delimiter is not None:  # lm-eval: the answer starts with the delimiter
            parts.target = task.target_delimiter + parts.target
            if parts.choices:
                parts.choices = [task.target_delimiter + c for c in parts.choices]
        return parts


def _drafts(task, module, raw, ctx: TaskContext, policy: ErrorPolicy, bar) -> dict[str, list]:
    """(record, parts) per split name (Drafter); bad records go to the policy."""
    drafter = Drafter(task, module, ctx)
    drafts: dict[str, list] = {}
    for name, loaded in raw.items():
        drafts[name] = []
        for src, records in loaded:
            fields = drafter.fields(src)
            for record in records:
                bar.update(1)
                try:
                    drafts[name].append((record, drafter.draft(record, fields)))
                except BadRecord as exc:
                    policy.bad(exc)
    return drafts


def _segments(task, fmt: ChatFormat, drafts, by_split, seed, policy: ErrorPolicy, bar) -> dict[str, list]:
    """Every example as (text, is an answer, is trained) segments (conversation.py), few-shot
    examples included; None for a record the chat template cannot render (skip mode)."""
    picker = None
    if task.few_shot and any(by_split.values()):
        if not by_split["train"]:
            raise DataError(f"task '{task.name}': few_shot needs training examples to draw from")
        order = {id(record): n for items in drafts.values() for n, (record, _) in enumerate(items)}
        picker = ShotPicker(task, by_split["train"], order, seed)
    out = {}
    for s, items in by_split.items():
        out[s] = []
        for i, (record, parts) in enumerate(items):
            bar.update(1)
            shots = picker.shots(s, i, record) if picker is not None else []
            try:
                out[s].append(render_segments(fmt, record, parts, shots))
            except BadRecord as exc:
                policy.bad(exc)
                out[s].append(None)
    return out


def render_segments(fmt: ChatFormat, record, parts, shots=()) -> list[tuple[str, bool, bool]]:
    """One example's (text, is an answer, is trained) segments; BadRecord when the chat template
    cannot render a conversation."""
    if parts.turns is None:  # one question, one answer
        prompt = fmt.render(build_messages(parts.system, list(shots), parts.history, parts.user), generation=True)
        return [(prompt, False, False), (parts.target, True, True)]
    messages, trained = _conversation(parts, shots)
    return conversation_segments(fmt, messages, trained, parts.tools, record.where)


def _conversation(parts, shots) -> tuple[list[dict], list[bool]]:
    """A chat's messages with the system prompt and few-shot turns (never trained) in front."""
    turns = [dict(m) for m in parts.turns]
    turns[parts.user_index]["content"] = parts.user  # after the instruction and user template
    trained = list(parts.trained)
    head = []
    if turns[0]["role"] == "system":
        head, turns, trained = [turns[0]], turns[1:], trained[1:]
    elif parts.system:
        head = [{"role": "system", "content": parts.system}]
    for user, answer in shots:
        head += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return head + turns, [False] * len(head) + trained


def _tokenised(task, fmt: ChatFormat, by_split, segments, removed, max_length, overlength, progress=None):
    """Examples per split after the over-length policy (compact tables, data/table.py), their
    counts, and the rejected records. Every segment is tokenised on its own (batched, a chunk of
    examples at a time, so token lists never pile up) and each answer gets the end-of-turn token;
    the final answer is `target_ids`, everything before it `prompt_ids`."""
    tokenizer = fmt.tokenizer
    bos = bos_prefix(tokenizer, fmt.use_chat)
    flat = [(s, i) for s in SPLIT_NAMES for i in range(len(by_split[s]))
            if i not in removed[s] and segments[s][i] is not None]
    vocab = max(len(tokenizer), tokenizer.vocab_size or 0)
    builders = {s: TableBuilder(task.name, s, vocab) for s in SPLIT_NAMES}
    counts = {s: {"kept": 0, "truncated": 0, "rejected": 0, "duplicates_removed": len(removed[s])}
              for s in SPLIT_NAMES}
    rejected = []
    bar = progress.stage(f"{task.name}: tokenizing", len(flat))
    for start in range(0, len(flat), TOKENIZE_CHUNK):
        chunk = flat[start:start + TOKENIZE_CHUNK]
        ids = iter(encode_batch(tokenizer, [text for s, i in chunk for text, _, _ in segments[s][i]]))
        for s, i in chunk:
            record, parts = by_split[s][i]
            truncated, reason = add_example(builders[s], task, fmt, bos, record, parts, segments[s][i], ids,
                                             max_length, overlength)
            by_split[s][i] = segments[s][i] = None  # now in the table: the Python objects can go
            if reason is not None:
                counts[s]["rejected"] += 1
                rejected.append(f"{record.where}: {reason}")
                continue
            counts[s]["kept"] += 1
            counts[s]["truncated"] += int(truncated)
        bar.update(len(chunk))
    bar.close()
    return {s: b.finish() for s, b in builders.items()}, counts, rejected


def add_example(builder, task, fmt: ChatFormat, bos, record, parts, segments, ids, max_length, overlength):
    """One example into its split's table: (truncated?, the reason when the over-length policy rejects it)."""
    p_ids, p_labels = list(bos), [IGNORE_INDEX] * len(bos)
    *before, (target_text, _, target_trained) = segments
    for _, answer, trained in before:
        seg = next(ids) + ([fmt.eot_id] if answer else [])
        p_ids += seg
        p_labels += seg if trained else [IGNORE_INDEX] * len(seg)
    t_ids = next(ids) + [fmt.eot_id]
    kept, truncated, reason = apply_length_policy(p_ids, t_ids, max_length, overlength)
    if kept is None:
        return False, reason
    label_ids = p_labels[len(p_ids) - len(kept):] + (t_ids if target_trained else [IGNORE_INDEX] * len(t_ids))
    if truncated:
        prompt_text = fmt.tokenizer.decode(kept, skip_special_tokens=False)
    else:  # the rendered text before the final answer (earlier answers with their end-of-turn token)
        prompt_text = "".join(text + (fmt.eot_text if answer else "") for text, answer, _ in before)
    builder.add(kept + t_ids, label_ids, len(kept), source_index=record.index, prompt_text=prompt_text,
                target_text=target_text, references=list(parts.references), label=parts.label,
                choices=parts.choices, answer_index=parts.answer_index, truncated=truncated,
                source=record.where, user_text=parts.user, choice_texts=parts.choice_texts,
                content_key=content_key(task.kind, parts))
    return truncated, None


def context(task, module, records) -> TaskContext:
    """The task's instruction and labels; `records`: every (source, record) pair, read only for
    labels taken from the data (a classification task without `labels:`)."""
    labels = words = synonyms = None
    if task.kind == "classification":
        words = classification.label_words(task)
        if words is not None:
            labels = list(dict.fromkeys(words.values()))
        else:  # labels taken from the data: every distinct value, numbers in numeric order
            values = set()
            for src, record in records:
                col = {**task.fields, **(src.fields or {})}.get("label", "label")
                try:
                    values.add(classification.raw_label(record, col))
                except BadRecord:
                    pass  # reported when the record itself is read
            labels = sorted(values, key=lambda v: (0, int(v), v) if v.lstrip("-").isdigit() else (1, 0, v))
        if task.label_synonyms and words is None:  # labels from the data are only known now
            try:
                check_label_synonyms(task.label_synonyms, labels, task.name)
            except ValueError as exc:
                raise DataError(str(exc)) from None
        synonyms = {label: list((task.label_synonyms or {}).get(label, [])) for label in labels}
    instruction = task.instruction if task.instruction is not None else module.default_instruction(task, labels)
    return TaskContext(instruction=instruction, labels=labels, label_words=words, label_synonyms=synonyms)


def split_ratios(split: SplitConfig, task_ratios: dict | None) -> dict[str, float]:
    """Each split's ratio: data.split's, with the task's own `ratios` over them."""
    return {**{s: getattr(split, s) for s in SPLIT_NAMES}, **(task_ratios or {})}


def carve_plan(has_source: bool, given) -> tuple[str, list[str]] | None:
    """Which pool the ratios carve and into which splits: a plain `source` into all three; else
    the given train file into train plus the splits not given; None when nothing is carved (no
    train file, or every split given)."""
    if has_source:
        return "all", list(SPLIT_NAMES)
    missing = [s for s in SPLIT_NAMES if s not in given]
    if "train" not in given or not missing:
        return None
    return "train", ["train"] + missing


def _assign_splits(task, drafts: dict[str, list], split: SplitConfig, seed: int) -> dict[str, list]:
    """Use given split files; carve the rest (or everything) by the normalised ratios."""
    ratios = split_ratios(split, task.ratios)
    out = {s: list(drafts.get(s, [])) for s in SPLIT_NAMES}
    plan = carve_plan("all" in drafts, drafts)
    if plan is None:
        return out
    pool, targets = drafts[plan[0]], plan[1]
    carve = {s: ratios[s] for s in targets}
    if sum(carve.values()) <= 0:
        raise DataError(f"task '{task.name}': split ratios for {', '.join(targets)} are all zero")
    strata = [parts.label for _, parts in pool] if stratified(task, split) else None
    indices = split_indices(len(pool), carve, seed, task.name, strata)
    for s in targets:
        out[s] = [pool[i] for i in indices[s]]
    return out


def stratified(task, split: SplitConfig) -> bool:
    return task.kind == "classification" and split.stratify
