"""`tunelab generate MODEL_OR_RUN --input IN.jsonl --output OUT.jsonl`: batched generation over a file.

Records: {"messages": [...]} (the model's chat template) or {"prompt": "..."} (as it is, or as a
user message with --chat). The same generation loop as `tunelab eval` (batched, batch-invariant).
"""

from __future__ import annotations

from tunelab.cli.chat import add_model_arguments, load


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--input", "-i", required=True, help="JSONL of {messages} or {prompt} records")
    parser.add_argument("--output", "-o", required=True, help="JSONL: each record plus its prediction")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chat", action="store_true", help="wrap plain prompts as a user message in the chat template")
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def run(args) -> int:
    import sys

    from tunelab.evaluate.engine import BatchProgress
    from tunelab.evaluate.inference import generate_file

    lm, settings = load(args)
    settings = settings.model_copy(update={"stop": args.stop})
    n = generate_file(lm, args.input, args.output, settings, args.batch_size, chat=args.chat,
                      progress=BatchProgress(0, "generate", enabled=False))
    print(f"{n} predictions: {args.output}", file=sys.stderr)
    return 0
