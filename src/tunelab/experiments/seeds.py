"""Training seeds: the same system trained once per seed, so that one seed does not decide the story.

    seeds: [0, 1, 2]      # top level; train, study and demo honour it

    <output_dir>/<name>/              the seeds folder: one system over several training seeds
      config.resolved.yaml            the config as given (with `seeds:`)
      seeds.json                      {"seeds": [0, 1, 2], "runs": ["seed-0", "seed-1", "seed-2"]}
      seed-0/ seed-1/ seed-2/         ordinary run folders (train.seed = 0, 1, 2)
      compare.json compare.md report.html   with a `forgetting:` section: the base model against
                                            the system over its seeds (evaluate/compare.py)

Only the training seed changes between the runs (train.seed: initialisation, data order,
dropout); the data split is the one the top-level `seed` gives, so every seed is scored on the
same test examples and the base model's scores (cached by the evaluation) are the same for all.
compare.py reads a seeds folder, or the list of its runs, as one system whose seed-to-seed
variance counts in its tests (docs/evaluation.md, Seeds).

Running the same config again with --resume keeps the finished seeds, resumes an interrupted
one from its checkpoint and trains the seeds not yet run (seeds may be added to the list).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config import ConfigError, UserError
from tunelab.files import write_json
from tunelab.runfolder import DONE, RunFolder

SEEDS_FILE = "seeds.json"


def seed_name(seed: int) -> str:
    return f"seed-{seed}"


def seed_config(cfg, seed: int, root: Path):
    """One seed's config: cfg with train.seed = seed and no `seeds:`, its run folder root/seed-<s>/."""
    from tunelab.config.schema import ExperimentConfig

    raw = json.loads(cfg.model_dump_json())
    raw["seeds"] = None
    raw["train"]["seed"] = seed
    raw["name"] = seed_name(seed)
    raw["output_dir"] = str(root)
    new = ExperimentConfig.model_validate(raw)
    new.config_dir = cfg.config_dir
    return new


def write_seeds(root: Path, seeds: list[int]) -> Path:
    """seeds.json: which seeds the folder's system was trained with, and their runs (relative)."""
    return write_json(root / SEEDS_FILE, {"seeds": list(seeds), "runs": [seed_name(s) for s in seeds]})


def seed_runs(root: Path) -> list[Path]:
    """The run folders a seeds folder lists, in its order."""
    data = json.loads((root / SEEDS_FILE).read_text(encoding="utf-8"))
    return [root / r for r in data["runs"]]


def scores_forgetting(cfg) -> bool:
    section = cfg.forgetting
    return section is not None and section.after and bool(section.tasks or (section.lm_eval and section.lm_eval.tasks))


def finished(run: Path, cfg) -> bool:
    """Trained to the end and, with a `forgetting:` section, scored after."""
    return RunFolder.of(run).finished(scored=scores_forgetting(cfg))


def check_folder(root: Path, resume: bool) -> None:
    if RunFolder.of(root).holds_a_run():
        raise ConfigError(f"{root} holds a single run, not one per seed; choose another name (name=...)")
    started = [p.name for p in sorted(root.glob("seed-*")) if RunFolder.of(p).holds_a_run()]
    if started and not resume:
        raise ConfigError(f"{root} already holds seed runs ({', '.join(started)}); pass --resume to continue "
                          f"them, or choose another name")


def stop_unless_done(run: Path, log) -> None:
    """After one of several runs: go on only if it finished. Interrupted (Ctrl-C): KeyboardInterrupt
    (the CLI exits 130; --resume continues); ended otherwise (diverged, failed): a UserError."""
    from tunelab.evaluate.shard import launched_world

    if not launched_world().main:  # the main process writes summary.json, and decides
        return
    status = RunFolder.of(run).summary().get("status")
    if status == "interrupted":
        log(f"{run} interrupted; run the same command with --resume to continue")
        raise KeyboardInterrupt
    if status not in DONE:
        raise UserError(f"{run}: the run ended '{status}' (see its summary.json); fix the cause and continue "
                        f"with --resume")


def train_seeds(cfg, resume: bool = False, log=print) -> Path:
    """Train cfg once per seed of cfg.seeds and write seeds.json; returns the seeds folder.
    A seed's run that does not finish stops the loop (stop_unless_done)."""
    from tunelab.config.load import write_resolved
    from tunelab.evaluate.shard import launched_world
    from tunelab.train import train
    from tunelab.report import write_report
    from tunelab.train.run import run_dir

    main = launched_world().main  # under `accelerate launch`, every process trains; the main one writes
    root = run_dir(cfg)
    configs = [(s, seed_config(cfg, s, root)) for s in cfg.seeds]  # every seed's config checked first
    check_folder(root, resume)
    if main:
        write_resolved(cfg, root)
    for i, (seed, seed_cfg) in enumerate(configs, start=1):
        run = root / seed_name(seed)
        if finished(run, seed_cfg):
            log(f"seed {i}/{len(configs)}: {run}: done earlier, kept")
            continue
        log(f"seed {i}/{len(configs)}: {run}")
        train(seed_cfg, resume=RunFolder.of(run).holds_a_run(), handle_signals=True, report=write_report)
        stop_unless_done(run, log)
    if main:
        write_seeds(root, cfg.seeds)
    return root


def compare_seeds(cfg, root: Path, log=print) -> Path | None:
    """With a `forgetting:` section: the base model against the system over its seeds, written into
    the seeds folder (compare.json, compare.md, report.html). Returns report.html, else None."""
    if not scores_forgetting(cfg):
        return None
    from tunelab.evaluate.compare import compare_runs
    from tunelab.report import write_report

    runs = seed_runs(root)
    base = runs[0] / "forgetting" / "base"  # the base model's scores: the same examples for every seed
    compare_runs([str(base), [str(r) for r in runs]], output_dir=root, tuned_task=cfg.forgetting.tuned_task,
                 n_resamples=cfg.forgetting.bootstrap_resamples)
    html, _ = write_report(root)
    log(f"seeds: {root / 'compare.md'}\nreport: {html}")
    return html
