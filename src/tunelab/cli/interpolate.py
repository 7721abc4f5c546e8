"""`tunelab interpolate RUN --task T ... [--alphas 0,0.25,0.5,0.75,1] [--tuned-task T] [-o DIR]`:
evaluate the run's weights interpolated with the base model's (WiSE-FT) at each alpha, and compare
every alpha with alpha = 0 (the base model): gain on the tuned task vs change on the others.
Writes DIR (default RUN/interpolation/): alpha-<a>/, compare.json, compare.md, report.html."""

from __future__ import annotations

from tunelab.cli.eval import add_common


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (full fine-tuning, LoRA, DoRA or IA3)")
    add_common(parser)
    parser.add_argument("--alphas", default="0,0.25,0.5,0.75,1",
                        help="comma-separated weights of the tuned model, each in [0, 1]: 0 is the base model, "
                             "1 the model as trained (default 0,0.25,0.5,0.75,1; 0 is always included)")
    parser.add_argument("--tuned-task", help="the task the run was tuned for (default: the one scored task it "
                        "trained on)")
    parser.add_argument("--output", "-o", help="output folder (default RUN/interpolation)")


def parse_alphas(text: str) -> list[float]:
    from tunelab.cli.errors import UserError

    try:
        return [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise UserError(f"--alphas {text!r}: give numbers between 0 and 1, comma-separated") from None


def run(args) -> int:
    from pathlib import Path

    from tunelab.cli.eval import eval_settings
    from tunelab.evaluate.compare import compare_markdown
    from tunelab.evaluate.interpolation import interpolation_sweep

    alphas = parse_alphas(args.alphas)
    tasks, kwargs = eval_settings(args)
    out = Path(args.output) if args.output else Path(args.run) / "interpolation"
    table = interpolation_sweep(args.run, tasks, alphas=alphas, output_dir=out, tuned_task=args.tuned_task, **kwargs)
    print(compare_markdown(table))
    print(f"report: {out / 'report.html'}")
    return 0
