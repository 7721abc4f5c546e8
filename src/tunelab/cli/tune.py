"""`tunelab tune CONFIG.yaml --trials N [key=value ...]`: hyperparameter search with Optuna.

The config's `search:` section names the space; each trial is one training run. Rerunning the
same command resumes the study (SQLite under the study folder, or `--storage URL` to share one
study across machines) and stops once N trials have finished.
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("config", help="experiment YAML with a search: section")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.max_steps=50 name=study2")
    parser.add_argument("--trials", type=int, required=True,
                        help="finish this many trials in total (completed or pruned, counting earlier runs)")
    parser.add_argument("--storage", default=None,
                        help="Optuna database URL (default: sqlite:///<output_dir>/<name>/study.db), "
                             "e.g. postgresql://user@host/db to share a study across machines")
    parser.add_argument("--max-new-trials", type=int, default=None,
                        help="start at most this many trials in this invocation")


def run(args) -> int:
    from tunelab.cli.errors import UserError
    from tunelab.config import load_config
    from tunelab.experiments.search import run_search

    if args.trials < 1:
        raise UserError("--trials must be at least 1")
    cfg = load_config(args.config, args.overrides)
    result = run_search(cfg, args.trials, storage=args.storage, max_new_trials=args.max_new_trials)
    print(f"study '{result.study_name}' ({result.storage}): {result.n_finished} finished trial(s)")
    print(f"best {cfg.search.metric}: {result.best_value}  params: {result.best_params}")
    for label, path in (("best config", result.best_config), ("trials", result.table_csv),
                        ("plot", result.plot)):
        if path is not None:
            print(f"{label}: {path}")
    return 0
