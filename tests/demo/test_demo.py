"""`tunelab demo`: the built-in data is sound, and the quick path runs the whole orchestration.

The quick run uses the tiny random Llama: its numbers mean nothing, but every phase (base eval,
three training runs, forgetting reports, results JSON, report.html) must run and be wired right.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tunelab.experiments.demo import DATA_DIR, qa_task, sentiment_task


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _norm(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def test_sentiment_data_is_balanced_varied_and_unique():
    rows = _jsonl(DATA_DIR / "sentiment.jsonl")
    assert len(rows) == 320
    assert Counter(r["label"] for r in rows) == {"positive": 160, "negative": 160}
    texts = [_norm(r["text"]) for r in rows]
    assert len(set(texts)) == len(texts), "normalised duplicates would be flagged by the leak check"
    # Not template-generated: few reviews share their first three words.
    starts = Counter(" ".join(t.split()[:3]) for t in texts)
    assert starts.most_common(1)[0][1] <= 6


def test_qa_data_has_short_answers_and_aliases():
    rows = _jsonl(DATA_DIR / "qa.jsonl")
    assert len(rows) == 100
    assert len({_norm(r["question"]) for r in rows}) == 100
    assert all(r["answers"] and all(1 <= len(a.split()) <= 3 for a in r["answers"]) for r in rows)
    assert sum(len(r["answers"]) > 1 for r in rows) >= 30


def test_tasks_build_through_the_data_pipeline(tokenizer):
    from tunelab.config.data import TaskConfig
    from tunelab.data import build_task

    sent = build_task(TaskConfig.model_validate(sentiment_task()), tokenizer, seed=3)
    sizes = {k: len(v) for k, v in sent.splits.items()}
    assert sum(sizes.values()) == 320 and sizes["test"] >= 100 and sizes["train"] >= 180
    test_labels = Counter(ex.label for ex in sent.splits["test"])
    assert abs(test_labels["positive"] - test_labels["negative"]) <= 1  # stratified
    assert sent.leaks and all(v == {"exact": 0, "normalised": 0} for v in sent.leaks.values())
    qa = build_task(TaskConfig.model_validate(qa_task()), tokenizer, seed=3)
    assert len(qa.splits["train"]) == 40 and len(qa.splits["test"]) == 60
    ex = qa.splits["test"][0]
    assert ex.references[0] == ex.target_text and "<|im_start|>assistant" in ex.prompt_text


def test_quick_demo_runs_every_phase(tiny_model_dir, tmp_path, capsys):
    from tunelab.cli.main import main

    rc = main(["demo", "--quick", "--seed", "5", "--output", str(tmp_path), "--model", tiny_model_dir])
    assert rc == 0
    out = capsys.readouterr().out
    (folder,) = list(tmp_path.glob("demo-seed5-*"))
    results = json.loads((folder / "results.json").read_text())
    assert set(results["systems"]) == {"base", "lora-sentiment", "lora-mixture", "full-sentiment"}
    for name, system in results["systems"].items():
        assert 0.0 <= system["sentiment"]["accuracy"]["value"] <= 1.0
        assert system["n"] == {"sentiment": 6, "qa": 6}
        if name != "base":
            assert system["cost"]["steps"] == 2
            assert set(system["vs_base"]) == {"sentiment", "qa"}
            assert system["vs_base"]["qa"]["metric"] == "token_f1"  # the QA column's metric
            lo, hi = system["vs_base"]["qa"]["ci"]
            assert lo <= system["vs_base"]["qa"]["diff"] <= hi
    # LoRA trains a small fraction of the weights, full fine-tuning all of them.
    lora, full = results["systems"]["lora-sentiment"]["cost"], results["systems"]["full-sentiment"]["cost"]
    assert lora["trainable_params"] < full["trainable_params"] == full["total_params"]
    # The mixture run trained on both tasks; the single-task runs on sentiment only.
    mix_cfg = (folder / "lora-mixture" / "config.resolved.yaml").read_text()
    single_cfg = (folder / "lora-sentiment" / "config.resolved.yaml").read_text()
    assert "name: qa" in mix_cfg and "name: qa" not in single_cfg
    html = (folder / "report.html").read_text()
    assert "forgetting-table" in html and "<img" in html
    assert [p["name"] for p in results["phases"]][:2] == ["setup: resolve model", "1. evaluate the base model"]
    # The report's path is the last thing printed.
    assert out.strip().splitlines()[-1].endswith("report.html")
