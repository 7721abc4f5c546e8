"""Generation-evaluation throughput on DialogSum with SmolLM2-135M-Instruct.

Compares, in the same run on the same examples:
  baseline: a per-example transformers `model.generate` loop (greedy), the way most scripts do it
  tunelab:  tunelab.evaluate.generation.generate (length-sorted batches, left padding, KV cache)
Outputs must be identical token for token (the script exits 1 otherwise). Then the cache: the
same tunelab evaluation twice with an empty cache; the second run's model calls and wall time.
lm-evaluation-harness's hf backend is timed too when `lm_eval` is importable (optional).

    python benchmarks/eval_bench.py [--n 32] [--max-new-tokens 48] [--batch-size 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32, help="DialogSum test dialogues")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--data", default=str(DATA), help="folder holding dialogsum/")
    ap.add_argument("--json", help="write {'comparisons': [...]} here")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.config.evaluate import GenerationConfig
    from tunelab.data import build_task
    from tunelab.evaluate.generation import WorkCounter, eos_token_ids, generate
    from tunelab.evaluate.recipes import data_task_config, expand_task
    from tunelab.models import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    task = f"dialogsum={args.data}/dialogsum"
    examples = build_task(data_task_config(expand_task(task)), tokenizer, max_length=4096).splits["test"][: args.n]
    prompts = [e.prompt_ids for e in examples]
    settings = GenerationConfig(max_new_tokens=args.max_new_tokens)
    print(f"{len(prompts)} DialogSum dialogues, prompt tokens {min(map(len, prompts))}-{max(map(len, prompts))}, "
          f"max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}", flush=True)

    # warm-up (first-call allocations and kernel selection) for both paths
    model.generate(torch.tensor([prompts[0]]), max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    generate(model, tokenizer, prompts[:2], GenerationConfig(max_new_tokens=2), batch_size=2)

    eos = eos_token_ids(model, tokenizer)
    t0 = time.perf_counter()
    baseline = []
    with torch.inference_mode():
        for p in prompts:
            out = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                                 max_new_tokens=args.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            new = out[0, len(p):].tolist()
            baseline.append(new[: next((i for i, t in enumerate(new) if t in eos), len(new))])
    baseline_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ours = generate(model, tokenizer, prompts, settings, batch_size=args.batch_size)
    ours_s = time.perf_counter() - t0
    identical = sum(o.token_ids == b for o, b in zip(ours, baseline))
    tokens = sum(len(o.token_ids) for o in ours)
    print(f"per-example generate loop: {baseline_s:.1f}s ({tokens / baseline_s:.1f} new tokens/s)")
    print(f"tunelab batched (bs {args.batch_size}): {ours_s:.1f}s ({tokens / ours_s:.1f} new tokens/s)")
    print(f"ratio: {baseline_s / ours_s:.2f}x; identical outputs: {identical}/{len(prompts)}")
    comparisons = [{"name": f"dialogsum generation, {len(prompts)} examples, greedy {args.max_new_tokens} tokens "
                            f"(per-example HF generate vs tunelab batched)",
                    "baseline_s": round(baseline_s, 3), "ours_s": round(ours_s, 3),
                    "ratio": round(baseline_s / ours_s, 3), "identical": identical, "n": len(prompts)}]

    # the cache: full evaluation (data, model load, generation, ROUGE, bootstrap) twice
    from tunelab.evaluate.harness import evaluate

    with tempfile.TemporaryDirectory() as home:
        os.environ["TUNELAB_HOME"] = home
        os.environ.setdefault("HF_HOME", str(ROOT / ".cache" / "hf"))
        # the alias lives in the real TUNELAB_HOME; pass the resolved folder
        runs = []
        for _ in range(2):
            counter = WorkCounter()
            t0 = time.perf_counter()
            evaluate(path, [task], limit=args.n, output_dir=Path(home) / "out", generation=settings,
                     batch_size=args.batch_size, counter=counter)
            runs.append((time.perf_counter() - t0, counter))
    (cold_s, cold), (warm_s, warm) = runs
    print(f"tunelab eval, empty cache: {cold_s:.1f}s, {cold.forward_calls} model calls; "
          f"cached re-run: {warm_s:.2f}s, {warm.forward_calls} model calls, {warm.model_loads} model loads "
          f"-> {cold_s / warm_s:.1f}x faster")
    comparisons.append({"name": "tunelab eval re-run with cache (same task, model, settings)",
                        "baseline_s": round(cold_s, 3), "ours_s": round(warm_s, 3), "ratio": round(cold_s / warm_s, 3),
                        "model_calls": [cold.forward_calls, warm.forward_calls]})

    try:
        import lm_eval  # noqa: F401

        print("lm_eval is installed, but its DialogSum task needs the hub; not timed in this offline benchmark")
    except ImportError:
        print("lm-evaluation-harness not installed: its hf backend is not timed")

    if args.json:
        Path(args.json).write_text(json.dumps({"comparisons": comparisons}, indent=1))
    return 0 if identical == len(prompts) else 1


if __name__ == "__main__":
    sys.exit(main())
