"""`tunelab demo`: the seed's whole story on the embedded SmolLM2-135M-Instruct, offline.

  1. before   the base model answers a sentiment question with sentences (label extraction
              counts the outputs it cannot map), and answers short factual questions;
  2. tune     LoRA on sentiment only: it answers with labels, accuracy and F1 rise;
  3. forget   the factual QA measured before and after: whatever happens is reported;
  4. remedy   a LoRA run on a sentiment + QA mixture, and full fine-tuning on sentiment only,
              in one forgetting table with paired-bootstrap CIs;
  5. report   results.json, report.html (tunelab.report) and a summary table; the report's path
              is printed last.

Everything goes through the public APIs of the pipeline (tunelab.data, tunelab.train,
tunelab.evaluate, tunelab.metrics, tunelab.report); this module only decides what to run and
prints the story. The data is built in (demo_data/, written for tunelab). Each phase is timed:
the whole demo is planned to fit 15 minutes on an idle 2-core CPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "demo_data"
MODEL = "smollm2-135m-instruct"
LABELS = ["negative", "positive"]


@dataclass
class DemoPlan:
    """What the demo runs. The defaults are the real demo; `quick()` is for tests."""

    steps: int = 70  # optimizer steps per training run
    batch_size: int = 8
    lora_lr: float = 3e-4
    full_lr: float = 3e-5
    full_finetune: bool = True  # the "full vs LoRA" comparison (the slowest run)
    eval_limit: int | None = None  # None: the whole test split of each task
    sentiment_new_tokens: int = 20  # enough for the base model's first sentence
    qa_new_tokens: int = 16
    eval_batch_size: int = 16
    bootstrap: int = 1000

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(steps=2, batch_size=4, eval_limit=6, sentiment_new_tokens=4, qa_new_tokens=4,
                   eval_batch_size=8, bootstrap=100)


# --- the two built-in tasks, as data-pipeline task configs ------------------------------------

def sentiment_task() -> dict:
    return {
        "name": "sentiment",
        "kind": "classification",
        "source": {"path": str(DATA_DIR / "sentiment.jsonl")},
        "fields": {"text": "text", "label": "label"},
        "labels": LABELS,
        "instruction": "Is the sentiment of this review positive or negative?",
        # 320 reviews -> about 192 train, 16 validation, 112 test (stratified, seeded).
        "ratios": {"train": 0.6, "validation": 0.05, "test": 0.35},
    }


def qa_task() -> dict:
    return {
        "name": "qa",
        "kind": "qa",
        "source": {"path": str(DATA_DIR / "qa.jsonl")},
        "fields": {"question": "question", "answer": "answers"},
        "instruction": "Answer the question in a few words.",
        # 100 questions -> 40 train (used only by the mixture run), 60 test.
        "ratios": {"train": 0.4, "validation": 0.0, "test": 0.6},
    }


def eval_task(task: dict, plan: DemoPlan) -> dict:
    """The evaluation view of a task: its test split, scored with the metrics of its kind."""
    new_tokens = plan.sentiment_new_tokens if task["kind"] == "classification" else plan.qa_new_tokens
    return {**task, "max_new_tokens": new_tokens}


# --- training runs -------------------------------------------------------------------------

def run_config(name: str, out: Path, model: str, tasks: list[dict], method: str, plan: DemoPlan, seed: int):
    from tunelab.config import load_config

    raw = {
        "name": name,
        "seed": seed,
        "output_dir": str(out),
        "model": {"name": model},
        "data": {
            "tasks": tasks,
            "max_length": 256,
            # The mixture run samples the two tasks in proportion to their training sizes.
            "mixture": {"strategy": "proportional"},
        },
        "train": {
            "method": method,
            "lr": plan.lora_lr if method == "lora" else plan.full_lr,
            "max_steps": plan.steps,
            "batch_size": plan.batch_size,
            "precision": "bf16",
            "scheduler": "linear",
            "warmup_steps": max(1, plan.steps // 10),
            "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"},
            "checkpoint_every": None,
            "keep_last": 1,
        },
    }
    return load_config(data=raw)


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    detail: str = ""


@dataclass
class DemoState:
    folder: Path
    seed: int
    plan: DemoPlan
    model: str
    phases: list[Phase] = field(default_factory=list)
    evaluations: dict = field(default_factory=dict)  # system -> task -> result
    runs: dict = field(default_factory=dict)  # system -> run folder

    def timed(self, name: str):
        return _Timer(self, name)


class _Timer:
    def __init__(self, state: DemoState, name: str):
        self.state, self.phase = state, Phase(name)

    def __enter__(self) -> Phase:
        self.start = time.perf_counter()
        return self.phase

    def __exit__(self, *exc) -> None:
        self.phase.seconds = time.perf_counter() - self.start
        self.state.phases.append(self.phase)
