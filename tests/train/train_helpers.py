"""Toy data and configs for the training tests (imported as a plain module)."""

from __future__ import annotations

import os
import random

WORDS_POS = "good great lovely fine superb charming".split()
WORDS_NEG = "bad awful terrible boring dull weak".split()


def toy_records(n: int = 48, seed: int = 0) -> list[dict]:
    """Short reviews whose label follows from their words: a tiny model can learn this."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = WORDS_POS if label else WORDS_NEG
        out.append({"text": " ".join(rng.choice(words) for _ in range(rng.randint(2, 10))), "label": label})
    return out


def toy_config(tmp_path, model_dir: str, name: str = "run", n: int = 48, data: dict | None = None, **train):
    """An ExperimentConfig dict for the toy classification task; `train` keys override defaults."""
    defaults = {"method": "lora", "lr": 5e-3, "max_steps": 6, "batch_size": 8, "precision": "fp32",
                "progress": "off", "keep_last": 2}
    return {
        "name": name,
        "seed": 3,
        "output_dir": str(tmp_path / "runs"),
        "model": {"name": model_dir},
        "data": data or {"tasks": [{"name": "toy", "kind": "classification", "source": {"records": toy_records(n)},
                                    "fields": {"text": "text", "label": "label"},
                                    "labels": {0: "negative", 1: "positive"}}]},
        "train": {**defaults, **train},
    }


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    return env
