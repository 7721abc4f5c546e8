"""tunelab vs TRL's DPOTrainer: SmolLM2-135M LoRA DPO on the real LLaMA-Factory pairs, CPU.

    python benchmarks/dpo_bench.py [--json OUT] [--steps 8] [--reps 2] [--batch-size 4] [--profile]

Both trainers get the same token ids (tunelab's data pipeline on ../shared/data/preferences/
llamafactory_dpo_en_demo.json: the SmolLM2 chat template, prompt shared, only the final answer
scored), the same LoRA (r 8, alpha 16, all-linear, the reference = the base with the adapter
off), DPO sigmoid with beta 0.1, AdamW (lr 5e-5, constant, clipping 1.0), batch size (pairs),
precision (bf16 autocast by default) and number of steps. Runs alternate (tunelab, TRL, ...) and
each is its own subprocess, so peak RSS is per run. Reported per run:
  real tokens/s  non-padding tokens of the chosen and rejected rows of steps 2..N over the wall
                 time from the end of step 1 to the end of step N (step 1 warms up kernels)
  peak RSS       the worker's peak resident memory from the model load to the end of training
  MFU            real tokens/s x model FLOPs per real token / the bf16 (or fp32) matmul peak
                 measured at the start (benchmarks/machine.py). Model FLOPs of a pair: the policy's
                 forward and backward and the reference's forward over the prompt once and each
                 answer after it (what scoring the pair needs), averaged over the training split;
                 an implementation that computes the prompt twice (TRL) spends FLOPs that are not
                 counted, which lowers its MFU, as padding does
The best (highest tokens/s) run of each side is compared. --profile then runs tunelab once more
and prints where its steps' time goes by class of work (step_profile.py; `--reps 0 --profile
--steps 12` profiles only). TRL draws its batches in random order,
tunelab length-grouped: each side's own real tokens are counted, so padding is not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Shapes, Work, describe, inference_flops, machine_report, training_flops  # noqa: E402
from train_bench import load_average, peak_rss_mb, reset_peak_rss, run_json_worker, worker_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "preferences" / "llamafactory_dpo_en_demo.json"
LR, RANK, ALPHA, BETA = 5e-5, 8, 16, 0.1


def experiment(args, out_dir: str) -> dict:
    return {
        "name": "bench", "seed": 0, "output_dir": out_dir, "model": {"name": "smollm2-135m-instruct"},
        "data": {"max_length": args.max_length, "cache": False, "split": {"train": 1.0, "validation": 0.0, "test": 0.0},
                 "tasks": [{"name": "pairs", "kind": "preference", "source": {"path": str(DATA)}}]},
        "train": {"method": "lora", "objective": "dpo", "preference": {"beta": BETA}, "lr": LR, "scheduler": "constant",
                  "max_steps": args.steps, "batch_size": args.batch_size, "precision": args.precision,
                  "max_grad_norm": 1.0, "optimizer": "adamw", "progress": "off", "keep_last": 1, "keep_best": False,
                  "lora": {"r": RANK, "alpha": ALPHA, "target_modules": "all-linear"}},
    }


def worker_tunelab(args, data) -> dict:
    from tunelab.config import load_config
    from tunelab.train import train

    with tempfile.TemporaryDirectory() as out:
        reset_peak_rss()
        run = train(load_config(data=experiment(args, out)), data=data)
        rss = peak_rss_mb()
        steps = [json.loads(line) for line in open(run / "metrics.jsonl") if '"loss"' in line]
    tokens = sum(s["real_tokens"] for s in steps[1:])
    return {"tokens_per_s": tokens / (steps[-1]["elapsed_s"] - steps[0]["elapsed_s"]), "peak_rss_mb": rss,
            "steps": len(steps), "real_tokens": tokens, "final_loss": steps[-1]["loss"]}


def worker_trl(args, data) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from tunelab.models import resolve_model

    rows = [{"prompt_ids": list(e.prompt_ids), "chosen_ids": list(e.target_ids), "rejected_ids": list(e.rejected_ids)}
            for e in data.tasks["pairs"].splits["train"]]
    path = resolve_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    reset_peak_rss()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ends, tokens = [], []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
                           learning_rate=LR, lr_scheduler_type="constant", max_grad_norm=1.0, optim="adamw_torch",
                           beta=BETA, loss_type=["sigmoid"], bf16=args.precision == "bf16", use_cpu=True,
                           gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to=[], seed=0,
                           max_length=None, dataloader_num_workers=0)
        peft_config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
        # TRL tokenises text itself; give it tunelab's token ids instead (its collator takes them as they are)
        trainer = DPOTrainer(model=model, args=config, processing_class=tokenizer, peft_config=peft_config,
                             train_dataset=Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}]),
                             callbacks=[Clock()])
        trainer.train_dataset = Dataset.from_list(rows)
        trainer.train()
        rss = peak_rss_mb()
        logs = [h for h in trainer.state.log_history if "num_tokens" in h]
        tokens = logs[-1]["num_tokens"] - logs[0]["num_tokens"]
    return {"tokens_per_s": tokens / (ends[-1] - ends[0]), "peak_rss_mb": rss, "steps": len(ends),
            "real_tokens": tokens, "final_loss": logs[-1].get("loss")}


def flops_per_token(examples) -> float:
    """Model FLOPs of a LoRA DPO step per real token (see the module docstring), averaged over the
    training split: both trainers draw their batches from it."""
    from transformers import AutoConfig

    from tunelab.models import resolve_model

    work, real = Work(), 0
    for e in examples:
        work.add_pair(len(e.prompt_ids), len(e.target_ids), len(e.rejected_ids))
        real += 2 * len(e.prompt_ids) + len(e.target_ids) + len(e.rejected_ids)
    shapes = Shapes.of(AutoConfig.from_pretrained(resolve_model("smollm2-135m-instruct")))
    return (training_flops(shapes, work, "lora") + inference_flops(shapes, work)) / real


def worker(args) -> None:
    import torch
    from transformers import AutoTokenizer

    from tunelab.config import load_config
    from tunelab.data import prepare
    from tunelab.models import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    data = prepare(load_config(data=experiment(args, "/tmp")), tokenizer)
    if args.worker == "profile":
        from step_profile import profile_run

        from tunelab.train import train

        with tempfile.TemporaryDirectory() as out:
            profile = profile_run(train, load_config(data=experiment(args, out)), data, args.steps, RANK, 49152)
        Path(args.result).write_text(json.dumps({"profile": profile}))
        return
    result = (worker_trl if args.worker == "trl" else worker_tunelab)(args, data)
    result["model_flops_per_token"] = flops_per_token(data.tasks["pairs"].splits["train"])
    Path(args.result).write_text(json.dumps(result))


def run_worker(kind: str, args, env: dict) -> dict:
    return run_json_worker(kind, [sys.executable, __file__, "--worker", kind, "--steps", str(args.steps),
                                  "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                                  "--threads", str(args.threads), "--precision", args.precision], env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write {'comparisons': [...]} here")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--reps", type=int, default=2, help="runs per side, alternating")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--profile", action="store_true", help="then profile one tunelab run by class of work")
    p.add_argument("--worker", choices=["tunelab", "trl", "profile"], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if not DATA.exists():
        sys.exit(f"{DATA} not found: the benchmark reads ../shared/data")
    env = worker_env()
    machine = machine_report()  # the peak in this run, before the first worker
    peak = machine["peak_flops"]["bfloat16" if args.precision == "bf16" else "float32"]
    print(describe(machine), flush=True)
    print(f"SmolLM2-135M LoRA DPO, {args.precision}, {args.batch_size} pairs a step, {args.steps} steps, max_length "
          f"{args.max_length}; load average at start {load_average()}", flush=True)
    results: dict[str, list[dict]] = {"tunelab": [], "trl": []}
    for rep in range(args.reps):
        for side in results:
            t0 = time.perf_counter()
            r = run_worker(side, args, env)
            r["mfu"] = r["tokens_per_s"] * r["model_flops_per_token"] / peak
            results[side].append(r)
            print(f"  rep {rep + 1} {side:<8} {r['tokens_per_s']:8.1f} real tok/s  MFU {r['mfu']:6.1%}"
                  f"  peak RSS {r['peak_rss_mb']:7.0f} MB"
                  f"  final loss {r['final_loss']:.4f}  ({time.perf_counter() - t0:.0f} s, load {load_average()})",
                  flush=True)
    if args.profile:
        from step_profile import print_breakdown

        print_breakdown(run_worker("profile", args, env)["profile"], machine.get("cpu", "this CPU"))
    if not args.reps:
        return
    best = {side: max(rs, key=lambda r: r["tokens_per_s"]) for side, rs in results.items()}
    comparisons = [{"name": key, "baseline": best["trl"][field], "ours": best["tunelab"][field],
                    "ratio": best["tunelab"][field] / best["trl"][field]}
                   for key, field in (("real_tokens_per_s", "tokens_per_s"), ("peak_rss_mb", "peak_rss_mb"),
                                      ("mfu", "mfu"))]
    print(f"\n{'':<20}{'TRL':>12}{'tunelab':>12}{'ratio':>9}")
    for c in comparisons:
        print(f"{c['name']:<20}{c['baseline']:12.2f}{c['ours']:12.2f}{c['ratio']:9.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"comparisons": comparisons, "runs": results, "settings": vars(args),
                                               "machine": machine}, indent=2))


if __name__ == "__main__":
    main()
