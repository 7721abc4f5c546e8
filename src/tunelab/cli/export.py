"""`tunelab export RUN [--merge [--dtype bf16|fp16] | --gguf [--gguf-type f16|bf16|q8_0]]
[--checkpoint best|last|step-N] [--output DIR]`.

Without --merge: the adapter in PEFT format (or the full model for full/freeze runs).
With --merge: LoRA/DoRA/IA3 merged into the base weights, a safetensors folder that plain
`transformers.AutoModelForCausalLM.from_pretrained` loads (float32 unless --dtype).
With --gguf: the merged model as one GGUF file for llama.cpp / Ollama (llama.cpp's converter).
With --alpha A (and --merge or --gguf): the merged weights interpolated with the base model's,
(1 - A) * base + A * tuned (WiSE-FT; pick A with `tunelab interpolate`).
Every export folder holds a model card (README.md).
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("run", help="run folder (runs/<name>)")
    parser.add_argument("--merge", action="store_true", help="merge the adapter into the base model")
    parser.add_argument("--checkpoint", default="final",
                        help="final (default), best, last, or step-N from checkpoints/")
    parser.add_argument("--dtype", choices=["float32", "bf16", "fp16"],
                        help="merged model's safetensors dtype (default float32, as trained)")
    parser.add_argument("--gguf", action="store_true",
                        help="write a GGUF file for llama.cpp / Ollama (merges the adapter)")
    parser.add_argument("--gguf-type", choices=["f16", "bf16", "q8_0"], default=None,
                        help="GGUF tensor type (default f16; implies --gguf)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="with --merge or --gguf: (1 - ALPHA) * base + ALPHA * tuned weights, 0 <= ALPHA <= 1 "
                             "(WiSE-FT; see tunelab interpolate)")
    parser.add_argument("--output", help="output folder (default: RUN/export-merged, RUN/export-adapter "
                                         "or RUN/export-gguf)")


def run(args) -> int:
    from tunelab.export import export_run

    gguf = args.gguf_type or ("f16" if args.gguf else None)
    out = export_run(args.run, merge=args.merge, checkpoint=args.checkpoint, output=args.output,
                     dtype=args.dtype, gguf=gguf, alpha=args.alpha)
    print(out)
    return 0
