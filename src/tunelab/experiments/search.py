"""Hyperparameter search: Optuna TPE over the config's `search.space`, pruning on validation.

Each trial is one ordinary training run (`<study dir>/trials/trial-NNN/`) of the experiment
config with the sampled values applied as `key.sub=value` overrides. The study lives in SQLite
under the study dir (`<output_dir>/<name>/study.db`) unless `search.storage` names another
database URL: several machines pointing at one URL share a study. `tunelab tune` with the same
config resumes: finished trials are kept, trials of a killed process are marked failed and their
parameters are tried again, and the search runs until `--trials` trials have finished. The
objective of a trial is search_objective.py (a real training run; a test may pass its own).

Outputs in the study dir: `trials.csv` / `trials.json` (one row per trial), `best_config.yaml`
(the winning config, ready for `tunelab train`), `search.png` (history and per-parameter plots;
the Pareto front of gain vs forgetting when that objective is on) and `search.json` (summary).
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from tunelab.config import ConfigError
from tunelab.config.schema import ExperimentConfig
from tunelab.files import write_json, write_text

# train_and_validate(cfg, report) -> objective value (or (value, forgetting) with two objectives).
# `report(step, value)` hands an intermediate validation value to the pruner; it raises
# optuna.TrialPruned when the trial should stop.
TrainAndValidate = Callable[[ExperimentConfig, Callable[[int, float], None]], Any]


@dataclass
class StudyResult:
    study_dir: Path
    storage: str
    study_name: str
    n_finished: int
    best_params: dict
    best_value: Any
    best_config: Path | None
    table_csv: Path
    table_json: Path
    plot: Path | None


def study_dir(cfg: ExperimentConfig) -> Path:
    """<output_dir>/<name>/, a relative output_dir taken from the config file's folder (as runs)."""
    out = Path(cfg.output_dir)
    if not out.is_absolute():
        out = Path(cfg.config_dir) / out
    return out.resolve() / cfg.name


def storage_url(cfg: ExperimentConfig) -> str:
    if cfg.search.storage:
        return cfg.search.storage
    folder = study_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def set_dotted(data: dict, key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def trial_config(cfg: ExperimentConfig, params: dict, name: str, output_dir: str | Path) -> ExperimentConfig:
    """The experiment config with `params` applied, without its `search:` section."""
    raw = json.loads(cfg.model_dump_json())
    search = raw.pop("search", None) or {}
    if search.get("forgetting"):  # the second objective: the run's own forgetting report
        raw["forgetting"] = {**(raw.get("forgetting") or {}), "tasks": search["forgetting_tasks"]}
    for key, value in params.items():
        set_dotted(raw, key, value)
    raw["name"] = name
    raw["output_dir"] = str(output_dir)
    try:
        new = ExperimentConfig.model_validate(raw)
    except Exception as err:  # pydantic ValidationError: name the searched keys
        raise ConfigError(f"search.space values {params} give an invalid config: {err}") from None
    new.config_dir = cfg.config_dir
    return new


def check_space(cfg: ExperimentConfig) -> None:
    """Fail before any training if a searched key is not a config key (with did-you-mean)."""
    probe = {}
    for key, spec in cfg.search.space.items():
        probe[key] = spec.choices[0] if spec.type == "categorical" else (
            int(spec.low) if spec.type == "int" else spec.low
        )
    try:
        trial_config(cfg, probe, "probe", cfg.output_dir)
    except ConfigError as err:
        raise ConfigError(f"search.space: {err}") from None


def suggest(trial, space: dict) -> dict:
    params = {}
    for key, spec in space.items():
        if spec.type == "float":
            params[key] = trial.suggest_float(key, spec.low, spec.high, log=spec.log, step=spec.step)
        elif spec.type == "int":
            step = int(spec.step) if spec.step else 1
            params[key] = trial.suggest_int(key, int(spec.low), int(spec.high), log=spec.log, step=step)
        else:
            params[key] = trial.suggest_categorical(key, spec.choices)
    return params


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(study) -> int:
    """Trials left RUNNING by a killed process on this host: mark them failed and queue their
    parameters again. Trials of live processes (here or on other machines) are left alone."""
    import optuna
    from optuna.trial import TrialState

    host = socket.gethostname()
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        worker_host, _, pid = worker.rpartition(":")
        if worker_host != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        recovered += 1
    if recovered:
        optuna.logging.get_logger("tunelab").info("re-queued %d interrupted trial(s)", recovered)
    return recovered


def create_study(cfg: ExperimentConfig, storage: str | None = None):
    import optuna

    search = cfg.search
    seed = cfg.seed if search.seed is None else search.seed
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.startup_trials)
    if search.pruner == "median" and not search.forgetting:
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=search.pruner_startup_trials, n_warmup_steps=search.pruner_warmup_steps
        )
    else:  # Optuna cannot prune multi-objective studies
        pruner = optuna.pruners.NopPruner()
    directions = [search.direction] + (["minimize"] if search.forgetting else [])
    return optuna.create_study(
        study_name=search.study_name or cfg.name,
        storage=storage or storage_url(cfg),
        sampler=sampler,
        pruner=pruner,
        directions=directions,
        load_if_exists=True,
    )


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_search(
    cfg: ExperimentConfig,
    n_trials: int,
    train_and_validate: TrainAndValidate | None = None,
    storage: str | None = None,
    max_new_trials: int | None = None,
    log: Callable[[str], None] = print,
) -> StudyResult:
    """Run (or resume) the study until `n_trials` trials have finished (completed or pruned).

    `max_new_trials` stops this call early (the study can be continued later).
    """
    import optuna

    if cfg.search is None:
        raise ConfigError("the config has no 'search:' section; add one with a 'space:' to tune")
    check_space(cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if train_and_validate is None:
        from tunelab.experiments.search_objective import make_train_and_validate

        train_and_validate = make_train_and_validate(cfg.search)
    folder = study_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    study = create_study(cfg, storage)
    recover_interrupted(study)
    two_objectives = cfg.search.forgetting

    def objective(trial):
        trial.set_user_attr("worker", _worker_id())
        params = suggest(trial, cfg.search.space)
        name = f"trial-{trial.number:03d}"
        trial.set_user_attr("run_dir", str(folder / "trials" / name))
        tcfg = trial_config(cfg, params, name, folder / "trials")

        def report(step: int, value: float) -> None:
            if two_objectives:
                return
            trial.report(float(value), int(step))
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} ({cfg.search.metric}={value:.4f})")

        start = time.perf_counter()
        value = train_and_validate(tcfg, report)
        trial.set_user_attr("wall_s", round(time.perf_counter() - start, 3))
        return tuple(value) if two_objectives else float(value)

    started = 0
    while _finished(study) < n_trials and (max_new_trials is None or started < max_new_trials):
        started += 1
        before = _finished(study)
        study.optimize(objective, n_trials=1, catch=())
        trial = study.trials[-1]
        log(f"trial {trial.number}: {trial.state.name.lower()} value={trial.values} params={trial.params} "
            f"({_finished(study)}/{n_trials} finished)")
        if _finished(study) == before and trial.state.name == "FAIL":
            raise RuntimeError(f"trial {trial.number} failed; see its run folder")
    return write_outputs(cfg, study, storage or storage_url(cfg))


# --- outputs ------------------------------------------------------------------------------------

def trials_table(study) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.values[0] if t.values else None,
            "forgetting": t.values[1] if t.values and len(t.values) > 1 else None,
            "last_step": t.last_step,
            "wall_s": t.user_attrs.get("wall_s"),
            "run_dir": t.user_attrs.get("run_dir"),
        }
        row.update({f"param:{k}": v for k, v in t.params.items()})
        rows.append(row)
    return rows


def best_trials(study) -> list:
    if len(study.directions) > 1:
        return list(study.best_trials)
    try:
        return [study.best_trial]
    except ValueError:  # no completed trial
        return []


def write_outputs(cfg: ExperimentConfig, study, storage: str) -> StudyResult:
    folder = study_dir(cfg)
    rows = trials_table(study)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table_csv = folder / "trials.csv"
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(table_csv, text.getvalue())
    table_json = folder / "trials.json"
    write_json(table_json, rows, indent=2)

    best = best_trials(study)
    best_config = None
    best_params: dict = {}
    best_value: Any = None
    if best:
        top = best[0]
        best_params, best_value = dict(top.params), (top.values if len(top.values) > 1 else top.value)
        chosen = trial_config(cfg, best_params, f"{cfg.name}-best", cfg.output_dir)
        raw = json.loads(chosen.model_dump_json())
        best_config = folder / "best_config.yaml"
        header = (
            f"# Best trial {top.number} of study '{study.study_name}' ({storage}).\n"
            f"# {cfg.search.metric} = {best_value}; train it with: tunelab train {best_config.name}\n"
        )
        write_text(best_config, header + yaml.safe_dump(raw, sort_keys=False))
    summary = {
        "study_name": study.study_name,
        "storage": storage,
        "metric": cfg.search.metric,
        "direction": cfg.search.direction,
        "forgetting_objective": cfg.search.forgetting,
        "n_trials": len(rows),
        "n_finished": _finished(study),
        "best_trials": [{"number": t.number, "values": t.values, "params": t.params} for t in best],
    }
    write_json(folder / "search.json", summary, indent=2)
    plot = plot_search(cfg, rows, folder / "search.png")
    return StudyResult(folder, storage, study.study_name, _finished(study), best_params, best_value,
                       best_config, table_csv, table_json, plot)


def plot_search(cfg: ExperimentConfig, rows: list[dict], path: Path) -> Path | None:
    done = [r for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = [k for k in rows[0] if k.startswith("param:")] if rows else []
    params = sorted({k for r in rows for k in r if k.startswith("param:")})
    n_panels = 1 + len(params) + (1 if cfg.search.forgetting else 0)
    fig, axes = plt.subplots(1, n_panels, figsize=(4 * n_panels, 3.4), squeeze=False)
    axes = axes[0]
    minimize = cfg.search.direction == "minimize"
    # History: every finished trial and the best so far.
    ax = axes[0]
    xs = [r["number"] for r in done]
    ys = [r["value"] for r in done]
    best, running = [], None
    for y in ys:
        running = y if running is None else (min(running, y) if minimize else max(running, y))
        best.append(running)
    ax.scatter(xs, ys, s=18, label="trial")
    ax.step(xs, best, where="post", color="C3", label="best so far")
    pruned = [r for r in rows if r["state"] == "pruned"]
    if pruned:
        ax.scatter([r["number"] for r in pruned], [min(ys) if minimize else max(ys)] * len(pruned),
                   marker="x", color="grey", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(cfg.search.metric)
    ax.set_title("optimisation history")
    ax.legend(fontsize=7)
    for ax, key in zip(axes[1:], params):
        vals = [r.get(key) for r in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            ax.scatter(vals, ys, s=18)
            spec = cfg.search.space.get(key.removeprefix("param:"))
            if spec is not None and spec.log:
                ax.set_xscale("log")
        else:
            labels = [str(v) for v in vals]
            cats = sorted(set(labels))
            ax.scatter([cats.index(v) for v in labels], ys, s=18)
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(key.removeprefix("param:"))
        ax.set_ylabel(cfg.search.metric)
    if cfg.search.forgetting:
        ax = axes[-1]
        fx = [r["forgetting"] for r in done]
        ax.scatter(fx, ys, s=18, label="trial")
        front = _pareto(list(zip(fx, ys)), minimize)
        if front:
            ax.plot(*zip(*sorted(front)), color="C3", marker="o", label="Pareto front")
        ax.set_xlabel("forgetting (held-out drop)")
        ax.set_ylabel(cfg.search.metric)
        ax.set_title("gain vs forgetting")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pareto(points: list[tuple[float, float]], minimize_value: bool) -> list[tuple[float, float]]:
    """Points not dominated by another (forgetting minimised; value by its direction)."""
    def better_or_equal(a, b):
        value_ok = a[1] <= b[1] if minimize_value else a[1] >= b[1]
        return a[0] <= b[0] and value_ok

    return [p for p in points if not any(q != p and better_or_equal(q, p) for q in points)]
