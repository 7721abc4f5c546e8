"""`tunelab compare RUN_A RUN_B ...`: one table of metrics with CIs, paired tests (each named, with
its detectable change) and run costs; with --output, also report.html (every system side by side,
the gain-vs-forgetting plot)."""

from __future__ import annotations

from tunelab.cli.eval import add_common


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders, eval output folders (results.json), seeds folders (one "
                        "system trained over several seeds: its tests count seed and example variance), or folders "
                        "holding several systems: a demo folder or an earlier compare --output folder")
    add_common(parser)
    parser.add_argument("--output", "-o", help="write compare.json, compare.md and report.html here")
    parser.add_argument("--tuned-task", help="the task the runs were tuned for: the others are the held-out side of "
                        "the gain-vs-forgetting trade-off (default: the one task every tuned run trained on)")


def run(args) -> int:
    from tunelab.evaluate.compare import compare_runs, compare_markdown

    kwargs = {}
    tasks = []
    if args.tasks or args.config or args.lm_eval:
        from tunelab.cli.eval import eval_settings

        tasks, kwargs = eval_settings(args)
    table = compare_runs(args.runs, tasks=tasks or None, output_dir=args.output, tuned_task=args.tuned_task, **kwargs)
    print(compare_markdown(table))
    if args.output:
        from tunelab.report import write_report

        html, _ = write_report(args.output)
        print(f"report: {html}")
    return 0
