"""`tunelab compare RUN_A RUN_B ...`: one table of metrics with CIs, paired tests and run costs."""

from __future__ import annotations

from tunelab.cli.eval import add_common


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (or eval output folders with results.json)")
    add_common(parser)
    parser.add_argument("--output", "-o", help="write compare.json and compare.md here")


def run(args) -> int:
    from tunelab.evaluate.compare import compare_runs, compare_markdown

    kwargs = {}
    tasks = []
    if args.tasks or args.config or args.lm_eval:
        from tunelab.cli.eval import eval_settings

        tasks, kwargs = eval_settings(args)
    table = compare_runs(args.runs, tasks=tasks or None, output_dir=args.output, **kwargs)
    print(compare_markdown(table))
    return 0
