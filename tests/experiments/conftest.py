"""Small two-task configs on the tiny random Llama (fast: a few steps, a few dozen records)."""

from __future__ import annotations

import pytest

WORDS_POS = ["great", "wonderful", "moving", "funny", "brilliant", "charming", "clever", "warm"]
WORDS_NEG = ["dull", "boring", "awful", "clumsy", "tedious", "flat", "lifeless", "weak"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]


def sentiment_records(n: int = 40) -> list[dict]:
    out = []
    for i in range(n):
        pos = i % 2 == 0
        word = (WORDS_POS if pos else WORDS_NEG)[(i // 2) % 8]
        out.append({"sentence": f"the film number {i} was {word} from start to end", "label": int(pos)})
    return out


def colour_records(n: int = 40) -> list[dict]:
    return [{"prompt": f"Item {i} is painted {COLOURS[i % 8]}. What colour is item {i}?",
             "completion": COLOURS[i % 8]} for i in range(n)]


def two_task_config(model_dir: str, out_dir, method: str = "lora", steps: int = 3) -> dict:
    return {
        "name": "cl",
        "seed": 3,
        "output_dir": str(out_dir),
        "model": {"name": model_dir},
        "data": {
            "max_length": 64,
            "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
            "tasks": [
                {"name": "sentiment", "kind": "classification", "source": {"records": sentiment_records()},
                 "fields": {"text": "sentence", "label": "label"}, "labels": {0: "negative", 1: "positive"}},
                {"name": "colour", "kind": "completion", "source": {"records": colour_records()}},
            ],
        },
        "train": {"method": method, "max_steps": steps, "batch_size": 4, "lr": 5e-3, "precision": "fp32",
                  "progress": "off", "lora": {"r": 4, "alpha": 8}, "keep_last": 1},
    }


@pytest.fixture
def two_tasks(tiny_model_dir, tmp_path):
    return lambda **kw: two_task_config(tiny_model_dir, tmp_path / "runs", **kw)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run 2-3x faster on one thread when the 2 cores are shared with other work."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
