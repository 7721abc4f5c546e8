"""`tunelab train CONFIG.yaml [key=value ...] [--resume]`: fine-tune a model from a config.

Under `accelerate launch` the same command trains with several processes (see docs/training.md).
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("config", help="experiment YAML (model, data, train sections)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.lr=1e-4 train.method=dora name=try2")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run from its latest checkpoint (weights, optimizer, RNG, data order)")


def run(args) -> int:
    import json
    import sys

    from tunelab.config import load_config
    from tunelab.train import train

    cfg = load_config(args.config, args.overrides)
    if cfg.stages:  # continual fine-tuning: one run per stage, then the task x stage matrix
        from tunelab.experiments import run_continual

        print(run_continual(cfg, resume=args.resume))
        return 0
    run_dir = train(cfg, resume=args.resume, handle_signals=True)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if summary.get("status") == "interrupted":
        print(f"interrupted at step {summary.get('steps')}; continue with: tunelab train {args.config} "
              f"{' '.join(args.overrides)} --resume".replace("  ", " "), file=sys.stderr)
        print(run_dir)
        return 130
    print(run_dir)
    return 0
