"""`tunelab forgetting`: base vs tuned run on held-out tasks, with paired tests."""

from __future__ import annotations

from tunelab.cli.eval import add_common, eval_settings


def add_arguments(parser) -> None:
    parser.add_argument("--base", help="base model (default: the run's model.name)")
    parser.add_argument("--tuned", required=True, help="tuned run folder (or a PEFT adapter folder with --adapter)")
    parser.add_argument("--adapter", help="evaluate this adapter on --base instead of the run's final/")
    parser.add_argument("--tuned-task", help="the task the run was tuned for (default: the run's only data task)")
    add_common(parser)
    parser.add_argument("--output", "-o", help="output folder (default: RUN/forgetting)")


def run(args) -> int:
    from tunelab.evaluate.forgetting import forgetting_markdown, measure_forgetting

    tasks, kwargs = eval_settings(args)
    n_resamples = kwargs.pop("n_resamples")
    report = measure_forgetting(args.base, args.tuned, tasks, tuned_task=args.tuned_task, output_dir=args.output,
                        adapter=args.adapter, n_resamples=n_resamples, **kwargs)
    print(forgetting_markdown(report))
    print_examples_scored(report)
    return 0


def print_examples_scored(report: dict) -> None:
    """Per task, what both models were scored on (the same examples): n of the split, the split's
    rule and the limit that cut it, read from the tuned model's results.json."""
    import json
    from pathlib import Path

    from tunelab.cli.eval import print_scored

    path = Path(report["tuned_dir"]) / "results.json"
    if not path.exists():
        return
    tasks = json.loads(path.read_text(encoding="utf-8"))["tasks"]
    print("Examples scored (the same for base and tuned):")
    for name, res in tasks.items():
        print_scored(name, res, indent="  ")
