"""`tunelab` command line: a thin layer over the Python API.

Each subcommand lives in its own module under tunelab.cli with two functions:
`add_arguments(parser)` and `run(args) -> int`. Modules import heavy libraries (torch,
transformers) inside `run`, so `tunelab --help` and `tunelab score` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from tunelab import __version__

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tunelab.cli.demo", "run the offline quickstart on the embedded SmolLM2"),
    "init": ("tunelab.cli.init", "write a commented starter config"),
    "data": ("tunelab.cli.data", "inspect prompt datasets (preview)"),
    "models": ("tunelab.cli.models", "list model aliases and cache state"),
    "train": ("tunelab.cli.train", "fine-tune a model from a config"),
    "export": ("tunelab.cli.export", "export a run's adapter or merged model"),
    "eval": ("tunelab.cli.eval", "evaluate a model, adapter or run on tasks"),
    "forgetting": ("tunelab.cli.forgetting", "base vs tuned on held-out tasks"),
    "compare": ("tunelab.cli.compare", "compare runs with CIs and paired tests"),
    "interpolate": ("tunelab.cli.interpolate", "sweep weights from base to tuned (WiSE-FT): gain vs forgetting at each alpha"),
    "report": ("tunelab.cli.report", "write report.html and report.md for a run"),
    "tune": ("tunelab.cli.tune", "hyperparameter search with Optuna"),
    "score": ("tunelab.cli.score", "score predictions in a JSONL file"),
    "power": ("tunelab.cli.power", "plan test-set size, or the smallest change a test can see"),
    "chat": ("tunelab.cli.chat", "talk to a model, adapter or run (streaming)"),
    "generate": ("tunelab.cli.generate", "run a model, adapter or run over a JSONL file of prompts"),
}


def _available_commands() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunelab",
        description="Fine-tune pre-trained LLMs on your own data; measure what it gained and what it cost.",
    )
    parser.add_argument("--version", action="version", version=f"tunelab {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show third-party progress bars, log lines and warnings (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available_commands().items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    from tunelab.cli.quiet import quiet_third_party
    from tunelab.config.env import configure_threads

    configure_threads()  # before torch starts its thread pool (config/env.py: quotas, spinning)
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv  # anywhere: `tunelab train cfg.yaml --verbose` too
    quiet_third_party(verbose)  # before anything imports transformers
    parser = build_parser()
    args, extra = parser.parse_known_args([a for a in argv if a != "--verbose"])
    args.verbose = verbose
    # `tunelab train CFG --resume train.max_steps=20`: key=value overrides may also follow the flags.
    if extra and isinstance(getattr(args, "overrides", None), list) and all("=" in e and not e.startswith("-")
                                                                             for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    from tunelab.cli.errors import run_with_clean_errors

    return run_with_clean_errors(args._module.run, args)


if __name__ == "__main__":
    sys.exit(main())
