"""Generation-evaluation throughput on DialogSum with SmolLM2-135M-Instruct.

Compares, in the same run on the same examples:
  baseline: a per-example transformers `model.generate` loop (greedy), the way most scripts do it
  tunelab:  tunelab.evaluate.generation.generate (length-sorted batches, left padding, KV cache)
Outputs must be identical token for token (the script exits 1 otherwise). Then the cache: the
same tunelab evaluation twice with an empty cache; the second run's model calls and wall time.

Multiple choice (unless --skip-mc): MMLU zero- and 5-shot on ../shared/data/mmlu_subset, tunelab against
lm-evaluation-harness's hf backend in the same run (lmeval_mmlu_parity.py: lm-eval's own MMLU
template, float32, the same batch size), identical per-question letters required. Timed: each
whole command, and its scoring calls alone. Needs `pip install "lm_eval[hf]>=0.4,<0.5"`.

Every section prints model FLOP/s and MFU against the matmul peak measured at the start of the
run (machine.py: the CPU, its ISA features, fp32 and bf16 peaks); the model runs in float32.

    python benchmarks/eval_bench.py [--n 32] [--max-new-tokens 48] [--batch-size 16] [--json OUT]
                                    [--skip-mc] [--mc-subjects a+b] [--mc-shots 0,5]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Shapes, Work, describe, inference_flops, machine_report  # noqa: E402

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
    ap.add_argument("--skip-mc", action="store_true", help="no multiple-choice comparison with lm-eval")
    ap.add_argument("--mc-subjects", help="MMLU subjects a+b (default: every subject in the subset)")
    ap.add_argument("--mc-shots", default="0,5", help="few-shot settings to compare, comma separated")
    args = ap.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tunelab.config.evaluate import GenerationConfig
    from tunelab.data import build_task
    from tunelab.evaluate.generation import WorkCounter, eos_token_ids, generate
    from tunelab.evaluate.recipes import data_task_config, expand_task
    from tunelab.models import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_report()
    peak = machine["peak_flops"]["float32"]
    print(describe(machine), flush=True)
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
    work = Work()
    for p, o in zip(prompts, ours):
        work.add_sequence(len(p) + len(o.token_ids), len(o.token_ids))
    flops = inference_flops(Shapes.of(model.config), work)
    print(f"ratio: {baseline_s / ours_s:.2f}x; identical outputs: {identical}/{len(prompts)}; model FLOP/s: "
          f"per-example {flops / baseline_s / 1e9:.1f} G ({flops / baseline_s / peak:.1%} MFU), "
          f"tunelab {flops / ours_s / 1e9:.1f} G ({flops / ours_s / peak:.1%} MFU, fp32 peak)")
    comparisons = [{"name": f"dialogsum generation, {len(prompts)} examples, greedy {args.max_new_tokens} tokens "
                            f"(per-example HF generate vs tunelab batched)",
                    "baseline_s": round(baseline_s, 3), "ours_s": round(ours_s, 3),
                    "ratio": round(baseline_s / ours_s, 3), "identical": identical, "n": len(prompts),
                    "model_flops": flops, "mfu": {"baseline": flops / baseline_s / peak, "ours": flops / ours_s / peak}}]

    # the cache: full evaluation (data, model load, generation, ROUGE, bootstrap) twice
    from tunelab.evaluate.harness import evaluate

    own_home = os.environ.get("TUNELAB_HOME")
    with tempfile.TemporaryDirectory() as home:
        os.environ["TUNELAB_HOME"] = home  # an empty cache (restored below: the alias stays where it was)
        os.environ.setdefault("HF_HOME", str(ROOT / ".cache" / "hf"))
        # the alias lives in the real TUNELAB_HOME; pass the resolved folder
        runs = []
        for _ in range(2):
            counter = WorkCounter()
            t0 = time.perf_counter()
            evaluate(path, [task], limit=args.n, output_dir=Path(home) / "out", generation=settings,
                     batch_size=args.batch_size, counter=counter)
            runs.append((time.perf_counter() - t0, counter))
    if own_home is None:
        os.environ.pop("TUNELAB_HOME")
    else:
        os.environ["TUNELAB_HOME"] = own_home
    (cold_s, cold), (warm_s, warm) = runs
    print(f"tunelab eval, empty cache: {cold_s:.1f}s, {cold.forward_calls} model calls; "
          f"cached re-run: {warm_s:.2f}s, {warm.forward_calls} model calls, {warm.model_loads} model loads "
          f"-> {cold_s / warm_s:.1f}x faster")
    comparisons.append({"name": "tunelab eval re-run with cache (same task, model, settings)",
                        "baseline_s": round(cold_s, 3), "ours_s": round(warm_s, 3), "ratio": round(cold_s / warm_s, 3),
                        "model_calls": [cold.forward_calls, warm.forward_calls]})

    mc_identical = True
    if not args.skip_mc:
        del model  # lm-eval and tunelab load their own copies
        shapes = Shapes.of(AutoConfig.from_pretrained(path))
        for shots in [int(x) for x in args.mc_shots.split(",")]:
            mc = multiple_choice(args, shapes, peak, shots)
            comparisons += mc
            mc_identical = mc_identical and all(c["identical"] == c["n"] for c in mc)
    if args.json:
        Path(args.json).write_text(json.dumps({"comparisons": comparisons, "machine": machine}, indent=1))
    return 0 if identical == len(prompts) and mc_identical else 1


def multiple_choice(args, shapes: Shapes, peak: float, shots: int) -> list[dict]:
    """MMLU with `shots` examples, tunelab vs lm-eval's hf backend (lmeval_mmlu_parity.py), same run.
    Model FLOPs count every question's whole context: a shared few-shot prefix run once is work
    saved, and shows as MFU above what the matmuls alone could reach."""
    from lmeval_mmlu_parity import DATA as MMLU, run_parity

    subjects = [s for s in (args.mc_subjects or "").replace("+", " ").split() if s] or None
    report = run_parity(subjects, MMLU, args.batch_size, shots=shots)
    work = Work()
    for n in report["context_tokens"]:  # one forward over the context; its last logits score all four letters
        work.add_sequence(n, 1)
    flops = inference_flops(shapes, work)
    total, wall, scoring = report["total"], report["seconds"], report["scoring_seconds"]
    print(f"MMLU {shots}-shot multiple choice, {total['questions']} questions, batch {args.batch_size}: identical letters "
          f"{total['identical_predictions']}/{total['questions']}, max |Δ loglik| {total['max_abs_diff']:.1e}")
    print(f"  whole command: lm-eval {wall['lm_eval']} s, tunelab {wall['tunelab']} s "
          f"-> {wall['lm_eval'] / wall['tunelab']:.2f}x")
    print(f"  scoring alone: lm-eval {scoring['lm_eval']} s ({flops / scoring['lm_eval'] / peak:.1%} MFU), "
          f"tunelab {scoring['tunelab']} s ({flops / scoring['tunelab'] / peak:.1%} MFU) "
          f"-> {scoring['lm_eval'] / scoring['tunelab']:.2f}x  (MFU counts every context in full: "
          f"above 100% where a shared prefix ran once)")
    n, same = total["questions"], total["identical_predictions"]
    return [{"name": f"MMLU {shots}-shot multiple choice, {n} questions, whole command (lm-eval hf backend vs tunelab eval)",
             "baseline_s": wall["lm_eval"], "ours_s": wall["tunelab"], "ratio": round(wall["lm_eval"] / wall["tunelab"], 3),
             "identical": same, "n": n},
            {"name": f"MMLU {shots}-shot multiple choice, {n} questions, scoring calls alone", "baseline_s": scoring["lm_eval"],
             "ours_s": scoring["tunelab"], "ratio": round(scoring["lm_eval"] / scoring["tunelab"], 3),
             "identical": same, "n": n, "model_flops": flops,
             "mfu": {"baseline": flops / scoring["lm_eval"] / peak, "ours": flops / scoring["tunelab"] / peak}}]


if __name__ == "__main__":
    sys.exit(main())
