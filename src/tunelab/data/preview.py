"""What `tunelab data preview` shows: counts, split sizes, mixture rates, token-length statistics
and examples exactly as the model sees them, the loss-masked prompt set apart from the answer."""

from __future__ import annotations

import math

from tunelab.config.data import SPLIT_NAMES
from tunelab.data.preference import preview_fields

TRAINED_START = "<<<TRAINED>>>"
TRAINED_END = "<<<END>>>"
IGNORE_INDEX = -100


def trained_pieces(tokenizer, example) -> list[tuple[str, bool]]:
    """The example's tokens as (decoded text, trained?) runs, in order: every trained span (each
    assistant turn of a chat) is one run, read from label_ids, exactly what the loss sees."""
    runs: list[tuple[list[int], bool]] = []
    for token, label in zip(example.input_ids, example.label_ids):
        trained = label != IGNORE_INDEX
        if runs and runs[-1][1] == trained:
            runs[-1][0].append(token)
        else:
            runs.append(([token], trained))
    return [(tokenizer.decode(ids, skip_special_tokens=False), trained) for ids, trained in runs]


def length_stats(lengths: list[int]) -> dict:
    """min / mean / p50 / p95 / max; percentiles by linear interpolation (numpy's default)."""
    if not lengths:
        return {"n": 0, "min": None, "mean": None, "p50": None, "p95": None, "max": None}
    values = sorted(lengths)

    def percentile(q: float) -> float:
        pos = (len(values) - 1) * q
        lo, hi = math.floor(pos), math.ceil(pos)
        return values[lo] + (values[hi] - values[lo]) * (pos - lo)

    return {"n": len(values), "min": values[0], "mean": round(sum(values) / len(values), 1),
            "p50": round(percentile(0.5), 1), "p95": round(percentile(0.95), 1), "max": values[-1]}


def token_lengths(task) -> dict[str, list[int]]:
    """Input, prompt and target lengths of every example of a task: from a table's columns
    (data/table.py) without building its Examples, a million rows in well under a second."""
    from tunelab.data.table import ExampleTable

    out = {"input": [], "prompt": [], "target": []}
    for s in SPLIT_NAMES:
        split = task.splits[s]
        if isinstance(split, ExampleTable):
            total = split.lengths
            prompt = split.prompt_len.astype(total.dtype)
            out["input"] += total.tolist()
            out["prompt"] += prompt.tolist()
            out["target"] += (total - prompt).tolist()
            continue
        for ex in split:
            out["input"].append(len(ex.input_ids))
            out["prompt"].append(len(ex.prompt_ids))
            out["target"].append(len(ex.target_ids))
    return out


def preview_summary(prepared, tokenizer, split: str = "train", n: int = 3) -> dict:
    """A JSON-ready summary of prepared data, with `n` rendered examples per task from `split`."""
    epoch = prepared.epoch_counts()
    tasks = {}
    examples = []
    for name, task in prepared.tasks.items():
        lengths = token_lengths(task)
        tasks[name] = {
            "kind": task.kind,
            "counts": task.counts,
            "split_sizes": {s: len(task.splits[s]) for s in SPLIT_NAMES},
            "labels": task.labels,
            "mixture_rate": prepared.mixture_rates.get(name, 0.0),
            "epoch_examples": epoch.get(name, 0),
            "tokens": {
                "input": length_stats(lengths["input"]),
                "prompt": length_stats(lengths["prompt"]),
                "target": length_stats(lengths["target"]),
            },
            "leaks": task.leaks,
            "chat_template": task.chat_template,
        }
        for ex in task.splits[split][:n]:
            examples.append({
                "task": name, "split": split, "source": ex.source,
                "prompt": tokenizer.decode(ex.prompt_ids, skip_special_tokens=False),
                "trained": tokenizer.decode(ex.target_ids, skip_special_tokens=False),
                "pieces": [list(p) for p in trained_pieces(tokenizer, ex)],
                "prompt_tokens": len(ex.prompt_ids),
                "trained_tokens": sum(label != IGNORE_INDEX for label in ex.label_ids),
                "truncated": ex.truncated, "references": ex.references, "label": ex.label,
                "choices": ex.choices, "answer_index": ex.answer_index,
                **preview_fields(tokenizer, ex),  # preference kinds: the rejected answer, kto's label
            })
    return {
        "tasks": tasks,
        "mixture": prepared.report["mixture"],
        "skipped": prepared.report["skipped"],
        "rejected": prepared.report["rejected"],
        "examples": examples,
    }


def plain_example(example: dict) -> str:
    """The text as is, every trained span between markers (for logs and non-terminals)."""
    return "".join(f"{TRAINED_START}{text}{TRAINED_END}" if trained else text for text, trained in example["pieces"])


def print_preview(summary: dict, console, plain: bool = False, max_rejected: int = 20) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    style = {"box": box.ASCII} if plain else {}
    table = Table(title="Tasks: records and splits", title_justify="left", **style)
    for col in ("task", "kind", "read", "skipped", "kept", "truncated", "rejected", "dup. removed",
                "train", "validation", "test", "rate", "epoch"):
        table.add_column(col, justify="left" if col in ("task", "kind") else "right")
    for name, t in summary["tasks"].items():
        c, sizes = t["counts"], t["split_sizes"]
        table.add_row(name, t["kind"], str(c["read"]), str(c["skipped"]), str(c["kept"]), str(c["truncated"]),
                      str(c["rejected"]), str(c["duplicates_removed"]), str(sizes["train"]),
                      str(sizes["validation"]), str(sizes["test"]), f"{t['mixture_rate']:.4f}",
                      str(t["epoch_examples"]))
    console.print(table)
    mix = summary["mixture"]
    console.print(f"Mixture: {mix['strategy']}; {mix['epoch_size']} training examples per epoch")
    formats = {name: t.get("chat_template") or {} for name, t in summary["tasks"].items()}
    if formats:
        console.print("Chat template: " + "; ".join(
            f"{name}: {f['template']} (answers end with {f['end_of_turn']})" if f.get("applied")
            else f"{name}: none (plain format)" for name, f in formats.items()), markup=False, highlight=False)

    lengths = Table(title="Token lengths (prompt + answer, all splits)", title_justify="left", **style)
    for col in ("task", "n", "min", "mean", "p50", "p95", "max", "prompt p95", "answer p95"):
        lengths.add_column(col, justify="left" if col == "task" else "right")
    for name, t in summary["tasks"].items():
        s = t["tokens"]["input"]
        lengths.add_row(name, *(str(s[k]) for k in ("n", "min", "mean", "p50", "p95", "max")),
                        str(t["tokens"]["prompt"]["p95"]), str(t["tokens"]["target"]["p95"]))
    console.print(lengths)

    for name, t in summary["tasks"].items():
        for pair, found in t["leaks"].items():
            if found["exact"] or found["normalised"]:
                console.print(f"Leak check: {name} {pair}: {found['exact']} exact and "
                              f"{found['normalised']} normalised duplicates")
    for label, items, cap in (("Skipped", summary["skipped"], None),
                              ("Rejected (over-length)", summary["rejected"], max_rejected)):
        if items:
            console.print(f"{label}: {len(items)}", markup=False)
            for line in items[:cap]:
                console.print(f"  {line}", markup=False, highlight=False)
            if cap is not None and len(items) > cap:
                console.print(f"  ... and {len(items) - cap} more (see --json)")

    if plain:
        console.print(f"Examples: prompt (no loss) as is, every trained part (each trained assistant turn) "
                      f"between {TRAINED_START} and {TRAINED_END}", markup=False, highlight=False)
    else:
        legend = Text("Examples: ")
        legend.append("prompt (masked, no loss)", style="dim")
        legend.append(", ")
        legend.append("trained answers", style="bold black on green")
        console.print(legend)
    for i, ex in enumerate(summary["examples"], start=1):
        head = f"--- {ex['task']} / {ex['split']} / {ex['source']}"
        spans = sum(trained for _, trained in ex["pieces"])
        if spans == 1:
            head += f" ({ex['prompt_tokens']} prompt + {ex['trained_tokens']} trained tokens"
        else:  # a chat with several trained turns: earlier answers sit inside the prompt
            head += f" ({ex['prompt_tokens']} prompt tokens, {ex['trained_tokens']} trained in {spans} spans"
        head += ", prompt truncated)" if ex["truncated"] else ")"
        if ex.get("desirable") is not None:  # kto
            head += f" desirable: {str(ex['desirable']).lower()}"
        console.print(head, markup=False, highlight=False)
        for label, pieces in [["", ex["pieces"]], *ex.get("alternatives", [])]:  # a pair: then the rejected answer
            if label:
                console.print(f"{label} (after the same prompt):", markup=False, highlight=False)
            if plain:
                console.print(plain_example({"pieces": pieces}), markup=False, highlight=False)
            else:
                text = Text()  # no base style: the answer must not inherit the prompt's dimming
                for piece, trained in pieces:
                    text.append(piece, style="bold black on green" if trained else "dim")
                console.print(text)
        if len(ex["references"]) > 1:
            console.print(f"references: {ex['references']}", markup=False, highlight=False)
