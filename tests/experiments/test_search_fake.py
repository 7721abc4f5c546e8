"""Optuna wiring with a fake, instant objective: trials, pruning, resume, outputs, bad spaces."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import optuna
import pytest

from tunelab.config import ConfigError, load_config
from tunelab.experiments.search import run_search


def _cfg(tmp_path, extra=""):
    path = tmp_path / "tune.yaml"
    path.write_text(textwrap.dedent(f"""
        name: study
        output_dir: {tmp_path / 'out'}
        train: {{method: lora}}
        search:
          startup_trials: 3
          pruner_startup_trials: 2
          space:
            train.lr: {{type: float, low: 1.0e-5, high: 1.0e-2, log: true}}
            train.lora.r: {{type: categorical, choices: [2, 4, 8]}}
            train.epochs: {{type: int, low: 1, high: 3}}
        {extra}
    """))
    return path


def fake_objective(cfg, report):
    """A loss that is smallest at lr = 1e-3, r = 8, with a validation 'curve' of 4 steps."""
    import math

    target = (math.log10(cfg.train.lr) + 3) ** 2 + (8 - cfg.train.lora.r) / 8 + 0.1 * cfg.train.epochs
    for step in range(1, 5):
        report(step * 10, target + 1.0 / step)
    return target + 0.25


def test_eight_trials_outputs_and_best_config_reproduces(tmp_path):
    cfg = load_config(_cfg(tmp_path))
    result = run_search(cfg, 8, fake_objective, log=lambda s: None)
    assert result.n_finished == 8
    rows = json.loads(result.table_json.read_text())
    assert len(rows) == 8 and {r["state"] for r in rows} <= {"complete", "pruned"}
    assert result.table_csv.read_text().splitlines()[0].startswith("number,state,value")
    assert result.plot is not None and result.plot.stat().st_size > 1000
    done = [r["value"] for r in rows if r["state"] == "complete"]
    assert result.best_value == min(done)
    # the best config is a plain experiment config (no search section) that scores the same
    best = load_config(result.best_config)
    assert best.search is None and best.name == "study-best"
    assert best.train.lr == pytest.approx(result.best_params["train.lr"])
    assert fake_objective(best, lambda s, v: None) == pytest.approx(result.best_value)
    assert str(result.storage).startswith("sqlite:///") and (tmp_path / "out" / "study" / "study.db").exists()


def test_pruning_stops_bad_trials(tmp_path):
    cfg = load_config(_cfg(tmp_path))
    seen_steps = []

    def objective(cfg, report):
        # later trials are worse at every step: the median pruner must stop them early
        bad = len(seen_steps)
        for step in range(1, 6):
            seen_steps.append(step)
            report(step, 1.0 + bad + 1.0 / step)
        return 1.0 + bad

    result = run_search(cfg, 6, objective, log=lambda s: None)
    rows = json.loads(result.table_json.read_text())
    states = [r["state"] for r in rows]
    assert "pruned" in states and states[:2] == ["complete", "complete"]
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert all(r["last_step"] == 1 for r in pruned)


def test_stop_after_four_then_continue_to_eight(tmp_path):
    cfg = load_config(_cfg(tmp_path))
    first = run_search(cfg, 8, fake_objective, max_new_trials=4, log=lambda s: None)
    assert first.n_finished == 4
    numbers_before = [r["number"] for r in json.loads(first.table_json.read_text())]
    second = run_search(load_config(_cfg(tmp_path)), 8, fake_objective, log=lambda s: None)
    rows = json.loads(second.table_json.read_text())
    assert second.n_finished == 8 and [r["number"] for r in rows][:4] == numbers_before
    # re-running a finished study trains nothing more
    third = run_search(load_config(_cfg(tmp_path)), 8, fake_objective, log=lambda s: None)
    assert third.n_finished == 8 and len(json.loads(third.table_json.read_text())) == 8


def test_killed_process_is_resumed(tmp_path):
    """SIGKILL a study mid-trial; the next run fails that trial, retries its parameters, finishes."""
    cfg_path = _cfg(tmp_path)
    marker = tmp_path / "in-trial-3"
    script = textwrap.dedent(f"""
        import sys, time, pathlib
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from test_search_fake import fake_objective
        from tunelab.config import load_config
        from tunelab.experiments.search import run_search
        calls = []
        def objective(cfg, report):
            calls.append(1)
            if len(calls) == 3:
                pathlib.Path({str(marker)!r}).write_text("x")
                time.sleep(60)
            return fake_objective(cfg, report)
        run_search(load_config({str(cfg_path)!r}), 8, objective, log=lambda s: None)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(600):
            if marker.exists():
                break
            time.sleep(0.1)
        assert marker.exists(), "the study never reached trial 3"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cfg = load_config(cfg_path)
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{tmp_path / 'out' / 'study' / 'study.db'}")
    running = [t for t in study.trials if t.state.name == "RUNNING"]
    assert len(running) == 1
    result = run_search(cfg, 8, fake_objective, log=lambda s: None)
    assert result.n_finished == 8
    rows = json.loads(result.table_json.read_text())
    failed = [r for r in rows if r["state"] == "fail"]
    assert [r["number"] for r in failed] == [running[0].number]
    retried = [r for r in rows if r["number"] == running[0].number + 1][0]
    assert retried["param:train.lr"] == running[0].params["train.lr"]


def test_unknown_search_key_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(f"""
        output_dir: {tmp_path}
        search:
          space:
            train.lrr: {{type: float, low: 1.0e-5, high: 1.0e-3, log: true}}
    """))
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        run_search(load_config(path), 2, fake_objective, log=lambda s: None)
    path.write_text("search:\n  space:\n    train.lr: {type: float, low: 0, high: 1, log: true}\n")
    with pytest.raises(ConfigError, match="low > 0"):
        load_config(path)
    with pytest.raises(ConfigError, match="no 'search:' section"):
        run_search(load_config(data={}), 2, fake_objective)
