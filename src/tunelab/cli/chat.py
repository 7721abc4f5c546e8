"""`tunelab chat MODEL_OR_RUN`: talk to a model, an adapter or a run's final model, streaming.

Each line you type is a user message; the answer streams as it is generated (the model's chat
template, greedy unless --sample). `/reset` starts the conversation again, `/exit` (or Ctrl-D)
ends it.
"""

from __future__ import annotations


def add_model_arguments(parser) -> None:
    parser.add_argument("model", help="a run folder, a model alias, a local model folder or a hub id")
    parser.add_argument("--adapter", help="a PEFT adapter folder on MODEL")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--allow-pickle", action="store_true", help="accept pickle-only weights (model.allow_pickle)")


def add_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--system", help="a system prompt")


def load(args):
    """(LazyModel, GenerationConfig) from the arguments: a folder with final/ is a run."""
    from pathlib import Path

    from tunelab.config.evaluate import GenerationConfig
    from tunelab.evaluate.loading import LazyModel, model_spec

    is_run = (Path(args.model) / "final").is_dir()
    spec = model_spec(None if is_run else args.model, args.adapter, args.model if is_run else None, args.dtype,
                      options={"allow_pickle": args.allow_pickle})
    settings = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=args.sample,
                                temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, seed=args.seed)
    return LazyModel(spec), settings


def run(args) -> int:
    import sys

    from tunelab.evaluate.inference import reply

    lm, settings = load(args)
    _ = lm.model  # load now: the first answer should not pay for it
    history = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(history)
    interactive = sys.stdin.isatty()
    print("tunelab chat: /reset starts again, /exit ends", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            return 0
        if not line.strip():
            continue
        if line.strip() == "/reset":
            messages = list(history)
            continue
        messages.append({"role": "user", "content": line.rstrip("\n")})
        answer = reply(lm, messages, settings, on_text=lambda text: print(text, end="", flush=True))
        print(flush=True)
        messages.append({"role": "assistant", "content": answer})
