"""`tunelab report RUN`: write report.html (self-contained, inline plots) and report.md."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (or any folder with metrics.jsonl / eval / forgetting results), a continual "
                        "experiment folder (matrix.json), a search study folder (search.json), or a folder with "
                        "compare.json (tunelab compare --output, a demo)")
    parser.add_argument("--output", "-o", help="output folder (default: the run folder)")


def run(args) -> int:
    from tunelab.report import write_report

    paths = write_report(args.run, args.output)
    for p in paths:
        print(p)
    return 0
