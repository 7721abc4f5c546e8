"""The run folder as a type: what a training run holds, where it came from, where its results are.

    <output_dir>/<name>/
      config.resolved.yaml  env.json  train_keys.json  metrics.jsonl  summary.json  .lock
      checkpoints/step-N/  final/  eval/  forgetting/{base,tuned}/  interpolation/alpha-<a>/

Every command that reads a run asks a `RunFolder` (compare, forgetting, the contamination guard,
loading a run's model, export, the report) instead of probing paths itself, so "is this a run",
"which run did this model come from" and "what has this model trained on" have one answer each.
Writing a run (the lock, the metrics log, summary.json) stays with training (train/run.py); this
module only reads, and imports nothing above config/ and files.py, so evaluate/ and report/ can
use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tunelab.files import read_jsonl

CONFIG, SUMMARY, METRICS, TRAIN_KEYS, ENV = ("config.resolved.yaml", "summary.json", "metrics.jsonl",
                                            "train_keys.json", "env.json")
RESULTS = "results.json"
MODEL_FOLDERS = ("final", "merged")  # a run's models, besides checkpoints/step-N/
DONE = ("completed", "early_stopped")  # summary.json statuses of a run trained to its end


def read_json(path: Path) -> dict | None:
    """A JSON file's object, None when the file is missing or not (yet) JSON (a writer still busy)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def is_run(path: str | Path) -> bool:
    """A folder a training run wrote: its resolved config or its training keys are there."""
    p = Path(path)
    return (p / TRAIN_KEYS).exists() or (p / CONFIG).exists()


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def of(cls, path: str | Path) -> RunFolder:
        return cls(Path(path))

    @classmethod
    def enclosing(cls, path: str | Path | None) -> RunFolder | None:
        """The run a model folder lives in (final/, merged/, checkpoints/step-N/, or the run itself).
        A final/ or merged/ folder that is gone (deleted to save space) still names its run."""
        if path is None:
            return None
        p = Path(path)
        if not p.exists():
            gone = p.name in MODEL_FOLDERS and (p.parent / TRAIN_KEYS).exists()
            return cls(p.parent) if gone else None
        for folder in [p, *list(p.resolve().parents)[:3]]:
            if (folder / TRAIN_KEYS).exists():
                return cls(folder)
        return None

    @classmethod
    def behind(cls, folder: str | Path) -> RunFolder | None:
        """The run behind a folder: the folder when it is a run, else the run whose model an
        evaluation folder scored (its results.json's model.run: <run>/eval/, an interpolation
        point at <run>/interpolation/alpha-<a>/), else None."""
        folder = Path(folder)
        if is_run(folder):
            return cls(folder)
        run = ((read_json(folder / RESULTS) or {}).get("model") or {}).get("run")
        return cls(Path(run)) if run and Path(run).is_dir() else None

    # What the run holds
    @cached_property
    def config(self) -> dict:
        """The run's resolved config as written (a dict; {} when there is none)."""
        import yaml

        try:
            return yaml.safe_load((self.path / CONFIG).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            return {}

    def has_config(self) -> bool:
        return (self.path / CONFIG).exists()

    def summary(self) -> dict:
        """summary.json now (it changes while the run trains: not cached); {} when missing."""
        return read_json(self.path / SUMMARY) or {}

    def events(self) -> list[dict]:
        """Every complete event of metrics.jsonl (a torn last line is skipped)."""
        return [e for e in read_jsonl(self.path / METRICS).rows if isinstance(e, dict)]

    def env(self) -> dict:
        return read_json(self.path / ENV) or {}

    def train_keys(self) -> dict | None:
        """train_keys.json: the base model's name and each task's training-example keys."""
        return read_json(self.path / TRAIN_KEYS)

    @property
    def final(self) -> Path:
        return self.path / "final"

    def checkpoints(self) -> list[Path]:
        """checkpoints/step-N folders, oldest first."""
        folder = self.path / "checkpoints"
        found = [p for p in folder.iterdir() if p.name.startswith("step-")] if folder.is_dir() else []
        return sorted(found, key=lambda p: int(p.name.split("-")[1]) if p.name.split("-")[1].isdigit() else -1)

    def finished(self, scored: bool = False) -> bool:
        """Trained to its end with its final model written and, when `scored` (a `forgetting:`
        section), scored after training (forgetting.json)."""
        if self.summary().get("status") not in DONE or not self.final.exists():
            return False
        return not scored or (self.path / "forgetting" / "forgetting.json").exists()

    def holds_a_run(self) -> bool:
        """Checkpoints or a final model: something a new start must not overwrite."""
        return bool(self.checkpoints()) or self.final.exists()

    # Where it came from
    @property
    def model_name(self) -> str | None:
        """The model the run started from (model.name: a hub id, an alias or a folder)."""
        name = (self.config.get("model") or {}).get("name")
        return name if isinstance(name, str) else (self.train_keys() or {}).get("base_model")

    @property
    def seed(self) -> int | None:
        """The training seed (train.seed, else the config's seed)."""
        train_seed = (self.config.get("train") or {}).get("seed")
        return train_seed if train_seed is not None else self.config.get("seed")

    def parent(self) -> RunFolder | None:
        """The run whose model this run started from (a second stage: that run's final/ or
        merged/ folder or one of its checkpoints), else None."""
        base = (self.train_keys() or {}).get("base_model") or self.model_name
        return RunFolder.enclosing(base) if isinstance(base, str) else None

    def lineage(self) -> list[RunFolder]:
        """This run, the run it started from, that run's, and so on (each once)."""
        found, seen, run = [], set(), self
        while run is not None and run.path.resolve() not in seen:
            seen.add(run.path.resolve())
            found.append(run)
            run = run.parent()
        return found

    # What it trained on
    def trained_tasks(self) -> set[str] | None:
        """The tasks this run's model has trained on, counting the runs it started from; None
        without train_keys.json."""
        if self.train_keys() is None:
            return None
        return {task for run in self.lineage() for task in (run.train_keys() or {}).get("tasks", {})}

    # Where its results are
    def results_dir(self) -> Path | None:
        """The folder with this run's evaluation: eval/, else forgetting/tuned/, else the run itself."""
        for folder in (self.path / "eval", self.path / "forgetting" / "tuned", self.path):
            if (folder / RESULTS).exists():
                return folder
        return None

    def forgetting_report(self) -> dict | None:
        return read_json(self.path / "forgetting" / "forgetting.json")
