"""Hyperparameter search on the tiny model with the real training loop."""

import json

import optuna
import pytest

from tunelab.config import load_config
from tunelab.experiments.search import run_search
from tunelab.experiments.search_objective import make_train_and_validate, validation_values


def _search_cfg(raw, trials_dir=None):
    raw = dict(raw, name="tune")
    raw["data"] = dict(raw["data"], tasks=raw["data"]["tasks"][:1])  # sentiment only
    raw["train"] = dict(raw["train"], max_steps=4, eval_every=2, eval_limit=8)
    raw["search"] = {
        "startup_trials": 3,
        "pruner_startup_trials": 2,
        "space": {
            "train.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
            "train.lora.r": {"type": "categorical", "choices": [2, 4, 8]},
            "train.batch_size": {"type": "int", "low": 2, "high": 6, "step": 2},
        },
    }
    return load_config(data=raw)


def test_eight_trials_resume_and_best_config_retrains_to_same_score(two_tasks, tmp_path):
    raw = two_tasks()
    first = run_search(_search_cfg(raw), 8, max_new_trials=4, log=lambda s: None)
    assert first.n_finished == 4
    # a new process would load the same study from SQLite: continue it to 8
    result = run_search(_search_cfg(raw), 8, log=lambda s: None)
    assert result.n_finished == 8
    rows = json.loads(result.table_json.read_text())
    assert len(rows) == 8 and all(r["state"] in ("complete", "pruned") for r in rows)
    for r in rows:
        assert (tmp_path / "runs" / "tune" / "trials" / f"trial-{r['number']:03d}" / "summary.json").exists()

    best = load_config(result.best_config)
    assert best.search is None and best.train.lr == pytest.approx(result.best_params["train.lr"])
    best = best.model_copy(update={"output_dir": str(tmp_path / "retrain")})
    best.config_dir = str(tmp_path)
    from tunelab.train import train

    run = train(best)
    values = [v for _, v in validation_values(run, "val_loss")]
    assert min(values) == pytest.approx(result.best_value, rel=1e-6)

    # the study folder's report: the plot and one table row per trial
    from tunelab.report import write_report

    html_path, md_path = write_report(result.study_dir)
    html = html_path.read_text()
    assert "<h2 id='search'>Hyperparameter search</h2>" in html and "id='plot-search'" in html
    assert html.split("id='trials-table'")[1].split("</table>")[0].count("<tr>") == 9  # header + 8 trials
    best_number = json.loads((result.study_dir / "search.json").read_text())["best_trials"][0]["number"]
    assert f"Best trial {best_number}:" in html
    assert "8 of 8 trials finished" in md_path.read_text()


def test_pruned_trial_stops_training_early(two_tasks):
    cfg = _search_cfg(two_tasks())
    tcfg = cfg.model_copy(update={"search": None, "name": "pruned"})
    tcfg.config_dir = cfg.config_dir
    tcfg.train.max_steps = 40
    objective = make_train_and_validate(cfg.search)

    def report(step, value):
        raise optuna.TrialPruned(f"step {step}")

    with pytest.raises(optuna.TrialPruned):
        objective(tcfg, report)
    from tunelab.train.run import run_dir

    summary = json.loads((run_dir(tcfg) / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["steps"] < 40  # stopped by the pruner callback


def test_forgetting_objective_gives_a_pareto_front_of_real_runs(two_tasks, tmp_path):
    """search.forgetting: each trial trains for real, its forgetting report (base vs tuned on the
    held-out task) gives the second objective, and the study reports the Pareto front."""
    raw = two_tasks()
    raw = dict(raw, name="tune-forget")
    raw["data"] = dict(raw["data"], tasks=raw["data"]["tasks"][:1])  # tuned on sentiment only
    # Unbalanced answers and option texts: a model that drifts towards another colour scores differently.
    colours = ["red", "blue", "green", "yellow"]
    answers = [0] * 10 + [1] * 7 + [2] * 5 + [3] * 2
    held_out = {"name": "colour_quiz", "kind": "multiple_choice", "answer_format": "text",
                "ratios": {"train": 0, "validation": 0, "test": 1},
                "source": {"records": [{"question": f"Item {i} is painted {colours[a]}. Its colour?",
                                        "choices": colours, "answer": a} for i, a in enumerate(answers)]}}
    raw["train"] = dict(raw["train"], max_steps=4, eval_every=2, eval_limit=8)
    raw["forgetting"] = {"limit": 24, "bootstrap_resamples": 50}
    raw["search"] = {"metric": "val_loss", "direction": "minimize", "forgetting": True,
                     "forgetting_tasks": [held_out], "startup_trials": 4,
                     "space": {"train.lr": {"type": "float", "low": 1e-6, "high": 1e-1, "log": True}}}
    result = run_search(load_config(data=raw), 4, log=lambda s: None)
    rows = json.loads(result.table_json.read_text())
    assert len(rows) == 4 and all(r["state"] == "complete" for r in rows)
    for r in rows:  # the second objective is the trial's own forgetting report
        report = json.loads((tmp_path / "runs" / "tune-forget" / "trials" / f"trial-{r['number']:03d}"
                             / "forgetting" / "forgetting.json").read_text())
        assert report["summary"]["held_out_tasks"] == ["colour_quiz"]
        assert r["forgetting"] == pytest.approx(-report["summary"]["held_out_change"])
    assert len({r["forgetting"] for r in rows}) >= 2  # learning rates that forget differently
    summary = json.loads((result.study_dir / "search.json").read_text())
    front = summary["best_trials"]
    assert summary["forgetting_objective"] and front
    points = {r["number"]: (r["value"], r["forgetting"]) for r in rows}
    for t in front:  # no trial dominates a front trial
        v, f = points[t["number"]]
        assert not any(ov <= v and of <= f and (ov, of) != (v, f) for ov, of in points.values())
    assert result.plot is not None and result.plot.stat().st_size > 1000
