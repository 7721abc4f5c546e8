"""Trade-off study: the same data trained several ways, and what each gained and what it cost.

    study:
      methods: {lora: [1e-4, 3e-4, 1e-3], full: [1e-5, 3e-5, 1e-4]}   # one system per (method, lr)
      systems: {lora-mixture: {data.tasks: [...]}}                    # more systems as overrides
      tuned_task: sentiment
    forgetting:
      tasks: [sentiment, qa, topic]    # the tuned task (its test split) and held-out tasks

Each system is one ordinary training run (`<output_dir>/<name>/runs/<system>/`) of the config
with its overrides, with the `forgetting:` section on: the base model is scored before (cached:
scored once for all systems) and the final model after, on the same examples. Then every system
is compared with the base model (evaluate/compare.py: paired differences, the trade-off of gain
on the tuned task against the change on the others) and the study folder gets compare.json,
compare.md and report.html (report/systems.py: the gain-vs-forgetting plot with paired CIs and the
Pareto front, metric bars, per-task tables, costs, links to each run's report).

With a top-level `seeds: [0, 1, 2]` every system is trained once per training seed
(`runs/<system>/seed-<s>/`, with `runs/<system>/seeds.json`: experiments/seeds.py) and compared
as one system over its seeds (its seed-to-seed variance counts in every test).

Running the same config again continues the study: finished systems are kept, an interrupted
one resumes from its checkpoint, the comparison is redone over all of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config import ConfigError
from tunelab.config.load import write_resolved
from tunelab.experiments.search import set_dotted
from tunelab.files import write_json, write_text
from tunelab.runfolder import RunFolder


def study_systems(cfg) -> list[tuple[str, dict]]:
    """(name, overrides) of every system, in the order they run and are shown."""
    systems = [(f"{method}-lr{lr:g}", {"train.method": method, "train.lr": lr})
               for method, lrs in cfg.study.methods.items() for lr in lrs]
    systems += list(cfg.study.systems.items())
    names = [n for n, _ in systems]
    if len(set(names)) != len(names):
        raise ConfigError(f"study: two systems have one name ({', '.join(names)})")
    return systems


def system_config(cfg, name: str, overrides: dict, root: Path):
    """The experiment config of one system: its overrides applied, its own run folder, no study."""
    from tunelab.config.schema import ExperimentConfig

    raw = json.loads(cfg.model_dump_json())
    raw.pop("study", None)
    for key, value in overrides.items():
        set_dotted(raw, key, value)
    raw["name"] = name
    raw["output_dir"] = str(root / "runs")
    try:
        new = ExperimentConfig.model_validate(raw)
    except Exception as err:  # pydantic's ValidationError: say which system
        raise ConfigError(f"study system '{name}' ({overrides}) gives an invalid config: {err}") from None
    new.config_dir = cfg.config_dir
    return new


def tuned_task_of(cfg) -> str:
    names = [t.name for t in cfg.data.tasks]
    tuned = cfg.study.tuned_task or (names[0] if names else None)
    if tuned not in names:
        raise ConfigError(f"study.tuned_task: '{tuned}' is not a task in data.tasks ({', '.join(names)})")
    return tuned


def check_study(cfg) -> None:
    """Before any training: the forgetting section scores the tuned task and at least one other;
    the interpolated systems are systems of the study."""
    if cfg.stages or cfg.search:
        raise ConfigError("study: a study's systems are single runs; remove 'stages:' / 'search:' from its config")
    names = [name for name, _ in study_systems(cfg)]
    unknown = [n for n in (cfg.study.interpolation.systems if cfg.study.interpolation else []) if n not in names]
    if unknown:
        raise ConfigError(f"study.interpolation.systems: {', '.join(unknown)} not among the study's systems "
                          f"({', '.join(names)})")
    tuned = tuned_task_of(cfg)
    section = cfg.forgetting
    refs = [t if isinstance(t, str) else t.get("name") for t in (section.tasks if section else [])]
    if tuned not in refs or len(refs) < 2:
        raise ConfigError(f"study: forgetting.tasks must list the tuned task '{tuned}' (its test split) and at least "
                          f"one held-out task, e.g. forgetting: {{tasks: [{tuned}, mmlu]}}")


def run_study(cfg, resume: bool = False, log=print) -> Path:
    """Train and score every system, then compare them; returns the study folder."""
    from tunelab.evaluate.compare import compare_markdown, compare_runs
    from tunelab.report import write_report
    from tunelab.train.run import run_dir

    if cfg.study is None:
        raise ConfigError("the config has no 'study:' section")
    check_study(cfg)
    root = run_dir(cfg)  # <output_dir>/<name>, a relative output_dir taken from the config's folder
    configs = [(name, system_config(cfg, name, overrides, root))
               for name, overrides in study_systems(cfg)]  # every system's config checked before any training
    if (root / "runs").exists() and any((root / "runs").iterdir()) and not resume:
        raise ConfigError(f"{root} already holds a study; pass --resume to continue it, or choose another name")
    root.mkdir(parents=True, exist_ok=True)
    write_resolved(cfg, root)
    systems = [train_system(system_cfg, root / "runs" / name, f"study: system {i}/{len(configs)} {name}", resume, log)
               for i, (name, system_cfg) in enumerate(configs, start=1)]
    first = systems[0][0] if isinstance(systems[0], list) else systems[0]
    base = Path(first) / "forgetting" / "base"  # the base model's scores, the same for every system
    points = interpolation_points(cfg, configs, systems, log)
    table = compare_runs([str(base)] + systems + [p["folders"] for p in points], tuned_task=tuned_task_of(cfg),
                         n_resamples=cfg.forgetting.bootstrap_resamples,
                         system_names=["base"] + [name for name, _ in configs] + [p["label"] for p in points])
    record_interpolation(table, points)
    write_json(root / "compare.json", table)
    write_text(root / "compare.md", compare_markdown(table))
    html, _ = write_report(root)
    log(f"study: {root / 'compare.md'}\nreport: {html}")
    return root


def interpolation_points(cfg, configs: list, systems: list, log) -> list[dict]:
    """study.interpolation: each named system's runs scored at each alpha (no training); one entry
    per (system, alpha): its label, the system and alpha, and its folders (one per training seed)."""
    from tunelab.evaluate.interpolation import interpolate_run

    section = cfg.study.interpolation
    if section is None:
        return []
    by_name = {name: (system_cfg, runs) for (name, system_cfg), runs in zip(configs, systems)}
    points = []
    for name in section.systems:
        system_cfg, runs = by_name[name]
        runs = runs if isinstance(runs, list) else [runs]
        log(f"study: interpolating {name} toward the reference model at alpha {', '.join(f'{a:g}' for a in section.alphas)}")
        folders = [interpolate_run(system_cfg, run, section.alphas) for run in runs]  # per run: one per alpha
        for k, alpha in enumerate(section.alphas):
            seeds = [str(f[k]) for f in folders]
            points.append({"label": f"{name} alpha={alpha:g}", "system": name, "alpha": alpha,
                           "folders": seeds if len(seeds) > 1 else seeds[0]})
    return points


def record_interpolation(table: dict, points: list[dict]) -> None:
    """What was interpolated, for readers of compare.json (each alpha's trade-off point already
    carries its alpha and system: compare.mark_interpolation)."""
    if points:
        table["interpolation"] = {"systems": sorted({p["system"] for p in points}),
                                  "alphas": sorted({p["alpha"] for p in points})}


def train_system(system_cfg, run: Path, title: str, resume: bool, log) -> str | list[str]:
    """Train one system unless it finished earlier: its run folder, or with `seeds:` the list of
    its seed runs (one system to compare_runs)."""
    if system_cfg.seeds:
        from tunelab.experiments.seeds import seed_runs, train_seeds

        log(title)
        return [str(r) for r in seed_runs(train_seeds(system_cfg, resume=resume, log=log))]
    from tunelab.experiments.seeds import stop_unless_done
    from tunelab.report import write_report
    from tunelab.train import train

    if RunFolder.of(run).finished(scored=True):  # a study's systems are always scored after training
        log(f"{title}: done earlier, kept")
        return str(run)
    log(title)
    train(system_cfg, resume=RunFolder.of(run).has_config(), handle_signals=True, report=write_report)
    stop_unless_done(run, log)  # an interrupted system stops the study (--resume continues it)
    return str(run)
