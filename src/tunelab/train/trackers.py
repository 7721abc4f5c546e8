"""Experiment trackers: TensorBoard, MLflow and Weights & Biases, through their own libraries.

`train.report_to: [tensorboard, mlflow, wandb]` sends a run's config, every logged training step,
every validation, the forgetting report's numbers and its files (forgetting.json, summary.json, and
report.html when train()'s caller passes a report writer, as `tunelab train` does) to each tracker.
The run folder stays the record: trackers are copies, so a tracker that fails to start is an error
before training (a missing package names the extra to install), never a silently missing log.

Each tracker's run id is kept in <run>/trackers.json, so `--resume` continues the same MLflow run
and W&B run instead of starting new ones. Where they write: TensorBoard under <run>/tensorboard;
MLflow to `train.tracker_uri` (else $MLFLOW_TRACKING_URI, else MLflow's default); W&B to its
server, or offline under <run>/wandb with WANDB_MODE=offline. `train.tracker_project` names the
MLflow experiment and the W&B project.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from tunelab.config.base import ConfigError

# tracker -> (module that must import, extra that installs it)
REQUIREMENTS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
                "wandb": ("wandb", "wandb")}
IDS_FILE = "trackers.json"


def check_trackers(names: list[str]) -> None:
    """Before the model loads: every tracker's package is installed."""
    for name in names:
        module, extra = REQUIREMENTS[name]
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"train.report_to: {name} needs the {module} package: "
                              f"pip install 'tunelab[{extra}]'") from None


def flat_config(cfg) -> dict:
    """The resolved config as dotted keys (what trackers show as parameters)."""
    def walk(node, prefix=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{prefix}{k}.")
        else:
            yield prefix[:-1], node

    return dict(walk(json.loads(cfg.model_dump_json())))


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, run: Path, cfg, run_id: str | None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run / "tensorboard"))
        self.run_id = str(run / "tensorboard")
        text = "\n".join(f"{k}: {v}" for k, v in flat_config(cfg).items())
        self.writer.add_text("config", f"```\n{text}\n```", 0)

    def log_metrics(self, metrics: dict, step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_file(self, path: Path) -> None:  # TensorBoard has no files: the run folder holds them
        pass

    def close(self, status: str) -> None:
        self.writer.close()


class MlflowTracker:
    name = "mlflow"

    def __init__(self, run: Path, cfg, run_id: str | None):
        import mlflow

        t = cfg.train
        if t.tracker_uri:
            mlflow.set_tracking_uri(t.tracker_uri)
        self.client = mlflow.MlflowClient()
        if run_id is None:
            experiment = self.client.get_experiment_by_name(t.tracker_project)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(t.tracker_project)
            run_id = self.client.create_run(experiment_id, run_name=cfg.name,
                                            tags={"tunelab.run_dir": str(run)}).info.run_id
            params = flat_config(cfg)
            for key, value in params.items():  # MLflow keeps parameter values up to 6000 characters
                self.client.log_param(run_id, key, str(value)[:6000])
        self.run_id = run_id

    def log_metrics(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        import time

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_file(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        state = {"completed": "FINISHED", "early_stopped": "FINISHED", "interrupted": "KILLED",
                 "stopped": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, status=state)


class WandbTracker:
    name = "wandb"

    def __init__(self, run: Path, cfg, run_id: str | None):
        import wandb

        self.run = wandb.init(project=cfg.train.tracker_project, name=cfg.name, id=run_id, resume="allow",
                              dir=str(run), config=flat_config(cfg), reinit="finish_previous")
        self.run_id = self.run.id
        self.root = run

    def log_metrics(self, metrics: dict, step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_file(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(Path(path).parent), policy="now")

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status in ("completed", "early_stopped") else 1)


CLASSES = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}


class Trackers:
    """Every tracker of a run, called together; an empty one (no report_to) does nothing."""

    def __init__(self, run: Path | None = None, cfg=None):
        self.items = []
        if run is None or cfg is None or not cfg.train.report_to:
            return
        ids_file = run / IDS_FILE
        ids = json.loads(ids_file.read_text(encoding="utf-8")) if ids_file.exists() else {}
        for name in cfg.train.report_to:
            self.items.append(CLASSES[name](run, cfg, ids.get(name)))
        from tunelab.files import write_json

        write_json(ids_file, {t.name: t.run_id for t in self.items})

    def log_metrics(self, metrics: dict, step: int) -> None:
        numbers = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for tracker in self.items:
            tracker.log_metrics(numbers, step)

    def log_file(self, path: Path) -> None:
        if Path(path).exists():
            for tracker in self.items:
                tracker.log_file(Path(path))

    def close(self, status: str) -> None:
        for tracker in self.items:
            tracker.close(status)
        self.items = []
