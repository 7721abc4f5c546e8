"""train.report_to: MLflow (a local SQLite store), W&B (offline) and TensorBoard, read back through each
library's own API: the config, the loss curve, validation, the forgetting numbers and the run's files."""

import json
import os
import subprocess
import sys

import pytest

from tunelab.config import load_config
from tunelab.report import write_report  # the CLI gives train() the report writer; trackers then get report.html
from tunelab.train.loop import train
from train_helpers import subprocess_env, toy_config


def tracked_config(tmp_path, model_dir, name, report_to, **extra):
    raw = toy_config(tmp_path, model_dir, name=name, max_steps=4, eval_every=2, report_to=report_to,
                     tracker_project="tunelab-tests", **extra)
    raw["forgetting"] = {"tasks": ["toy"], "limit": 4, "bootstrap_resamples": 50,
                         "generation": {"max_new_tokens": 2}}
    return raw


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))


def test_mlflow_run_holds_config_curve_metrics_and_files(tmp_path, tiny_model_dir, home):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # MLflow puts a SQLite store's artifacts in ./mlruns unless the experiment says where
    MlflowClient(tracking_uri=uri).create_experiment("tunelab-tests", artifact_location=str(tmp_path / "artifacts"))
    run = train(load_config(data=tracked_config(tmp_path, tiny_model_dir, "ml", ["mlflow"], tracker_uri=uri)),
                report=write_report)
    client = MlflowClient(tracking_uri=uri)
    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "ml"
    assert got.data.params["train.lr"] == "0.005" and got.data.params["data.tasks"]  # the resolved config
    losses = [e["loss"] for e in map(json.loads, open(run / "metrics.jsonl")) if "loss" in e]
    history = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 3, 4] and [m.value for m in history] == pytest.approx(losses)
    assert [m.step for m in client.get_metric_history(run_id, "val_loss")] == [2, 4]
    forgetting = json.loads((run / "forgetting" / "forgetting.json").read_text())
    assert got.data.metrics["forgetting/toy/diff"] == pytest.approx(forgetting["tasks"][0]["diff"])
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"summary.json", "config.resolved.yaml", "forgetting.json", "report.html"} <= files


def wandb_records(path):
    """The records of an offline W&B run (run-<id>.wandb), parsed with W&B's own protobuf classes.

    The file is a 7-byte W&B header, then LevelDB-log framing in 32 KiB blocks (4-byte CRC, 2-byte
    length, 1-byte type: full, first, middle, last); wandb-core (Go) writes it and the Python
    package has no reader any more, so the framing is read here."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, pending, out = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # block trailer or padding
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
    return out


def test_wandb_offline_run_files(tmp_path, tiny_model_dir, home, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = train(load_config(data=tracked_config(tmp_path, tiny_model_dir, "wb", ["wandb"])), report=write_report)
    run_id = json.loads((run / "trackers.json").read_text())["wandb"]
    folders = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(folders) == 1
    records = wandb_records(folders[0] / f"run-{run_id}.wandb")
    config = {u.key: json.loads(u.value_json) for r in records if r.WhichOneof("record_type") == "run"
              for u in r.run.config.update}
    config = {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in config.items()}
    assert config["train.lr"] == 0.005 and config["name"] == "wb"
    history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    losses = [e["loss"] for e in map(json.loads, open(run / "metrics.jsonl")) if "loss" in e]
    assert [h["train/loss"] for h in history] == pytest.approx(losses)
    assert [h["_step"] for h in history if "val_loss" in h] == [2, 4]
    summary = {u.key or "/".join(u.nested_key): json.loads(u.value_json) for r in records
               if r.WhichOneof("record_type") == "summary" for u in r.summary.update}
    assert "forgetting/toy/diff" in summary
    files = folders[0] / "files"
    assert (files / "summary.json").exists() and (files / "report.html").exists()  # the run's files, saved
    exit_record = next(r for r in records if r.WhichOneof("record_type") == "exit")
    assert exit_record.exit.exit_code == 0


def test_tunelab_train_gives_the_trackers_the_report(tmp_path, tiny_model_dir, home, monkeypatch):
    """train/ does not import report/: the command passes the report writer, so `tunelab train`
    still sends report.html; a library call without one sends the run's other files."""
    from tunelab.cli.main import main

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    raw = tracked_config(tmp_path, tiny_model_dir, "cli", ["wandb"])
    raw.pop("forgetting")
    raw["train"].update(max_steps=1, eval_every=None)
    config = tmp_path / "cli.json"
    config.write_text(json.dumps(raw))
    assert main(["train", str(config)]) == 0
    run = tmp_path / "runs" / "cli"
    run_id = json.loads((run / "trackers.json").read_text())["wandb"]
    files = next((run / "wandb").glob(f"offline-run-*-{run_id}")) / "files"
    assert (files / "report.html").exists() and (files / "summary.json").exists() and (run / "report.html").exists()

    plain = train(load_config(data={**raw, "name": "plain"}))
    run_id = json.loads((plain / "trackers.json").read_text())["wandb"]
    files = next((plain / "wandb").glob(f"offline-run-*-{run_id}")) / "files"
    assert (files / "summary.json").exists() and not (files / "report.html").exists()


def test_tensorboard_event_file(tmp_path, tiny_model_dir, home):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(load_config(data=tracked_config(tmp_path, tiny_model_dir, "tb", ["tensorboard"])))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [s.step for s in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [s.step for s in events.Scalars("val_loss")] == [2, 4]


def test_missing_tracker_package_is_an_error_before_the_model_loads(tmp_path, tiny_model_dir):
    """mlflow made unimportable in a fresh process (sys.modules[...] = None is how Python blocks an import)."""
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(tracked_config(tmp_path, tiny_model_dir, "missing", ["mlflow"])))
    code = ("import sys, json; sys.modules['mlflow'] = None; from tunelab.cli.main import main; "
            f"sys.exit(main(['train', {str(config)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and lines == ["tunelab: error: train.report_to: mlflow needs the mlflow package: "
                                              "pip install 'tunelab[mlflow]'"], done.stderr
    assert not (tmp_path / "runs" / "missing").exists()
    assert os.path.exists(config)
