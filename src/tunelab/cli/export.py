"""`tunelab export RUN [--merge] [--checkpoint best|last|step-N] [--output DIR]`.

Without --merge: the adapter in PEFT format (or the full model for full/freeze runs).
With --merge: LoRA/DoRA/IA3 merged into the base weights, a safetensors folder that plain
`transformers.AutoModelForCausalLM.from_pretrained` loads.
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (runs/<name>)")
    parser.add_argument("--merge", action="store_true", help="merge the adapter into the base model")
    parser.add_argument("--checkpoint", default="final",
                        help="final (default), best, last, or step-N from checkpoints/")
    parser.add_argument("--output", help="output folder (default: RUN/export-merged or RUN/export-adapter)")


def run(args) -> int:
    from tunelab.train.export import export_run

    out = export_run(args.run, merge=args.merge, checkpoint=args.checkpoint, output=args.output)
    print(out)
    return 0
