"""Experiments built from training runs: continual fine-tuning (stages, replay, the task x stage
matrix with ACC/BWT/FWT) and hyperparameter search with Optuna.

    from tunelab.experiments import run_continual, run_search
    run_continual(cfg)             # cfg.stages: one run per stage, then matrix.json / .md / .png
    run_search(cfg, n_trials=8)    # cfg.search: study.db, trials.csv, best_config.yaml, search.png
"""

from __future__ import annotations

__all__ = ["run_continual", "run_search"]


def run_continual(cfg, resume: bool = False, **kwargs):
    from tunelab.experiments.continual import run_continual as _run

    return _run(cfg, resume=resume, **kwargs)


def run_search(cfg, n_trials: int, **kwargs):
    from tunelab.experiments.search import run_search as _run

    return _run(cfg, n_trials, **kwargs)
