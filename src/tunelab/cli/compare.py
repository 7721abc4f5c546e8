"""`tunelab compare RUN_A RUN_B ...`: one table of metrics with CIs, paired tests (each named, with
its detectable change) and run costs; with --output, also report.html (every system side by side,
the gain-vs-forgetting plot)."""

from __future__ import annotations

from tunelab.cli.eval import add_common
from tunelab.cli.errors import UserError


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders, eval output folders (results.json), seeds folders (one "
                        "system trained over several seeds: its tests count seed and example variance), or folders "
                        "holding several systems: a demo folder or an earlier compare --output folder")
    add_common(parser)
    parser.add_argument("--output", "-o", help="write compare.json, compare.md and report.html here")
    parser.add_argument("--tuned-task", action="append", metavar="[SYSTEM=]TASK",
                        help="the task the runs were tuned for: the others are the held-out side of the "
                        "gain-vs-forgetting trade-off; SYSTEM=TASK for one system (repeat it for systems tuned on "
                        "different tasks, e.g. --tuned-task sft=instr --tuned-task dpo=prefs). Default: the one "
                        "task every tuned run trained on, else each run's own one task")


def parse_tuned(values: list[str] | None) -> str | dict | None:
    """--tuned-task values: one TASK for every system, or SYSTEM=TASK pairs (not both)."""
    if not values:
        return None
    pairs = [v.partition("=") for v in values]
    if all(sep for _, sep, _ in pairs):
        found = {}
        for system, _, task in pairs:
            if not system or not task or system in found:
                raise UserError(f"--tuned-task {system}={task}: give each system once, as SYSTEM=TASK")
            found[system] = task
        return found
    if len(values) == 1:
        return values[0]
    raise UserError(f"--tuned-task {' '.join(values)}: give one TASK for every system, or SYSTEM=TASK for each")


def run(args) -> int:
    from tunelab.evaluate.compare import compare_runs, compare_markdown

    kwargs = {}
    tasks = []
    if args.tasks or args.config or args.lm_eval:
        from tunelab.cli.eval import eval_settings

        tasks, kwargs = eval_settings(args)
    elif args.bootstrap is not None:  # eval_settings reads it with --task; without, it still sets the resamples
        kwargs["n_resamples"] = args.bootstrap
    table = compare_runs(args.runs, tasks=tasks or None, output_dir=args.output,
                         tuned_task=parse_tuned(args.tuned_task), **kwargs)
    print(compare_markdown(table))
    if args.output:
        from tunelab.report import write_report

        html, _ = write_report(args.output)
        print(f"report: {html}")
    return 0
