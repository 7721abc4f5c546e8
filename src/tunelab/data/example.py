"""The records the rest of tunelab consumes: one tokenised `Example`, one task's `TaskData`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Example:
    task: str
    split: str  # train | validation | test
    source_index: int  # line (JSONL/CSV/TSV) or row/record number in the source
    prompt_text: str  # exactly what the model sees before the answer (after any truncation)
    target_text: str  # the answer, without the end-of-turn token
    prompt_ids: list[int]  # kept prompt tokens (after the over-length policy)
    target_ids: list[int]  # answer tokens + the end-of-turn / EOS token
    input_ids: list[int]  # prompt_ids + target_ids
    # token-level loss targets: the ids of every trained answer (+ its end-of-turn token), -100
    # elsewhere; one span (the answer) for single-turn kinds, one per trained assistant turn in chats
    label_ids: list[int]
    references: list[str]  # all gold answers; target_text is the first
    label: str | None = None  # classification: the verbalised class
    choices: list[str] | None = None  # multiple choice: candidate answers as the model writes them
    answer_index: int | None = None  # multiple choice: index of the right one in `choices`
    truncated: bool = False
    source: str = ""  # `file:line` (or `file: row N`), for tracing any number back to its record
    user_text: str = ""  # the user message before the chat template (leak-check key)
    choice_texts: list[str] | None = None  # multiple choice: option texts (choices may be letters)
    content_key: str = ""  # hash of the normalised input (data.leakage.content_key): contamination checks

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class TaskData:
    name: str
    kind: str
    splits: dict[str, list[Example]]  # "train", "validation", "test" (possibly empty)
    labels: list[str] | None  # classification: the verbalizers, in config order
    # read / skipped / kept / truncated / rejected / duplicates_removed, totals and `by_split`
    counts: dict = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # `file:line: reason` of every skipped record
    rejected: list[str] = field(default_factory=list)  # `file:line: reason` of every over-long reject
    leaks: dict = field(default_factory=dict)  # `a/b` -> {"exact": n, "normalised": n}
    # classification: every label -> its synonyms from `label_synonyms:` (empty lists when none),
    # the shape tunelab.metrics.labels.extract_label takes
    label_synonyms: dict[str, list[str]] | None = None
    # the prompt format: {applied, requested, template, sha256, end_of_turn} (ChatFormat.describe)
    chat_template: dict = field(default_factory=dict)
