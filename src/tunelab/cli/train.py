"""`tunelab train CONFIG.yaml [key=value ...] [--resume]`: fine-tune a model from a config.

Under `accelerate launch` the same command trains with several processes (see docs/training.md).
A config with `seeds:` trains one run per training seed (experiments/seeds.py), with `study:` a
trade-off study (experiments/study.py), with `stages:` continual fine-tuning.
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("config", help="experiment YAML (model, data, train sections), or with --resume a run "
                                       "folder (wherever it now is: its own config.resolved.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.lr=1e-4 train.method=dora name=try2")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run from its latest checkpoint (weights, optimizer, RNG, data order)")


def run(args) -> int:
    import sys

    from tunelab.evaluate.shard import launched_world
    from tunelab.runfolder import RunFolder
    from tunelab.train import train

    cfg = config_of(args)
    if cfg.study:  # a trade-off study: one run per system, then all of them side by side
        from tunelab.experiments.study import run_study

        print(run_study(cfg, resume=args.resume, log=to_stderr))
        return 0
    if cfg.seeds and cfg.stages:  # the continual experiment once per training seed, then its matrices over them
        from tunelab.experiments.continual_tests import run_continual_seeds

        print(run_continual_seeds(cfg, resume=args.resume, log=to_stderr))
        return 0
    if cfg.seeds:  # one run per training seed, then the system over its seeds against the base model
        from tunelab.experiments.seeds import compare_seeds, train_seeds

        root = train_seeds(cfg, resume=args.resume, log=to_stderr)
        if launched_world().main:
            compare_seeds(cfg, root, log=to_stderr)
            print(root)  # stdout: the seeds folder alone, for scripts
        return 0
    if cfg.stages:  # continual fine-tuning: one run per stage, then the task x stage matrix
        from tunelab.experiments import run_continual

        print(run_continual(cfg, resume=args.resume))
        return 0
    run_dir = train(cfg, resume=args.resume, handle_signals=True, report=write_report)
    if not launched_world().main:  # several processes: the main one reports, once
        return 0
    summary = RunFolder.of(run_dir).summary()
    print(closing_lines(run_dir, summary, cfg, args), file=sys.stderr)
    print(run_dir)  # stdout: the run folder alone, for scripts
    from tunelab.signals import EXIT_CODES, STATUSES

    return {STATUSES[s]: code for s, code in EXIT_CODES.items()}.get(summary.get("status"), 0)


def config_of(args):
    """The experiment YAML, or a run folder's own config (resumed where the folder now is)."""
    from pathlib import Path

    from tunelab.config import load_config

    if not Path(args.config).is_dir():
        return load_config(args.config, args.overrides)
    if not args.resume:
        from tunelab.config.base import ConfigError

        raise ConfigError(f"{args.config} is a folder: give an experiment YAML, or --resume to continue the run "
                          f"in that folder")
    from tunelab.train.resume import run_folder_config

    return run_folder_config(Path(args.config), args.overrides)


def write_report(run):
    """The run's report.html and report.md, for its trackers (train.report_to): report/ comes after
    train/, so the command gives the training loop this writer (imported only when a tracker asks)."""
    from tunelab.report import write_report as write

    return write(run)


def to_stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def time_text(summary: dict) -> str:
    """'95 s (training steps 60 s, 440 tokens/s; 3 starts)': the run's whole wall time over every
    start, and the training steps' share, which the tokens/s are over."""
    wall, tokens = summary.get("wall_s") or 0.0, summary.get("train_tokens") or 0
    training = (summary.get("phase_s") or {}).get("training")
    starts = len(summary.get("wall_s_per_start") or [1])
    parts = [f"training steps {training:.0f} s" + (f", {tokens / training:.0f} tokens/s" if training else "")] \
        if training is not None else ([f"{tokens / wall:.0f} tokens/s"] if wall else [])
    if starts > 1:
        parts.append(f"{starts} starts")
    return f"{wall:.0f} s" + (f" ({'; '.join(parts)})" if parts else "")


def closing_lines(run, summary: dict, cfg, args) -> str:
    """What happened, where the result is, and what to run next."""
    status = summary.get("status", "?")
    lines = [f"run {run}: {status}, {summary.get('steps')} steps in {time_text(summary)}"
             f", {summary.get('trainable_params', 0):,} trainable parameters"]
    best = summary.get("best")
    if best:
        lines.append(f"  best {best['metric']} {best['value']:.4f} at step {best['step']} ({summary['best_checkpoint']})")
    final = run / "final"
    if final.exists():
        kind = "adapter (PEFT)" if (final / "adapter_config.json").exists() else "model (safetensors)"
        lines.append(f"  {kind}: {final}")
    table = run / "forgetting" / "forgetting.md"
    if table.exists():  # the table itself (indented, as the other closing lines), then where it is
        lines += ["", *(f"  {line}" for line in table.read_text(encoding="utf-8").strip().splitlines()), "",
                  f"  forgetting: {table}"]
    if status in ("interrupted", "terminated"):
        again = " ".join(["tunelab train", str(args.config), *args.overrides, "--resume"])
        lines.append(f"  interrupted: continue with  {again}")
    elif final.exists():
        task = cfg.data.tasks[0].name if cfg.data.tasks else "TASK"
        lines.append(f"  next: tunelab eval --run {run} --task {task} --output {run / 'eval'}")
        lines.append(f"        tunelab report {run}")
    return "\n".join(lines)
