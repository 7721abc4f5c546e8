"""DDP vs FSDP memory: SmolLM2-135M full fine-tuning with 2 CPU processes, same run, alternating.

    python benchmarks/fsdp_memory.py [--json OUT] [--steps 8] [--reps 1] [--batch-size 4]
                                     [--processes 2] [--precision bf16]

Each side is `tunelab train` under `accelerate launch --multi_gpu --num_processes N` (gloo on
CPU), on the Alpaca demo set from ../shared/data, with train.distributed.strategy ddp or fsdp and
nothing else different. Reported per run, from the run's own files:
  peak RSS per process   summary.json's peak_rss_mb_per_process (ru_maxrss of each process at the
                         end of training: the model load, every step and the consolidation of final/)
  real tokens/s          non-padding tokens of steps 2..N over their wall time (metrics.jsonl)
  loss                   the last step's training loss (the two sides should agree to float tolerance)
Beside them, the shard arithmetic for P parameters, N processes and AdamW with fp32 master
weights: DDP keeps 4P (weights) + 4P (gradients) + 8P (two moments) = 16P bytes per process;
FSDP keeps 16P/N of them, plus one gathered decoder layer (or the root: embeddings, head) at a
time. Both load the whole model once at the start (4P) before sharding it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "instructions" / "llamafactory_alpaca_en_demo.json"


def experiment(args, out_dir: str, strategy: str) -> dict:
    return {
        "name": strategy, "seed": 0, "output_dir": out_dir,
        "model": {"name": "smollm2-135m-instruct"},
        "data": {"max_length": args.max_length, "split": {"train": 0.9, "validation": 0.1, "test": 0.0},
                 "tasks": [{"name": "alpaca", "kind": "instruction", "source": {"path": str(DATA)}}]},
        "train": {"method": "full", "lr": 1e-5, "max_steps": args.steps, "batch_size": args.batch_size,
                  "precision": args.precision, "progress": "off", "keep_last": 1, "keep_best": False,
                  "distributed": {"strategy": strategy}},
    }


def run_side(args, strategy: str, env: dict) -> dict:
    out = tempfile.mkdtemp(prefix=f"fsdp-bench-{strategy}-")
    config = Path(out) / "config.yaml"
    config.write_text(yaml.safe_dump(experiment(args, out, strategy)))
    launcher = str(Path(sys.executable).parent / "accelerate")
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", str(args.processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tunelab.cli", "train", str(config)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{strategy} run failed:\n{done.stderr[-4000:]}")
    run = Path(out) / strategy
    summary = json.loads((run / "summary.json").read_text())
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in steps if "loss" in e and "step" in e and e.get("split") is None]
    timed = [e for e in steps if e["step"] >= 2]
    tokens_per_s = sum(e["real_tokens"] for e in timed) / sum(e["step_s"] for e in timed)
    return {"strategy": strategy, "peak_rss_mb_per_process": summary["peak_rss_mb_per_process"],
            "real_tokens_per_s": round(tokens_per_s, 1), "last_loss": steps[-1]["loss"],
            "params": summary["total_params"], "run": str(run)}


def shard_arithmetic(params: int, processes: int) -> dict:
    mb = 1024 * 1024
    return {"weights_grads_adam_mb_ddp": round(16 * params / mb, 1),
            "weights_grads_adam_mb_fsdp": round(16 * params / processes / mb, 1),
            "whole_model_load_mb": round(4 * params / mb, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the runs and the arithmetic here")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--reps", type=int, default=1, help="runs per side, alternating")
    p.add_argument("--batch-size", type=int, default=4, help="per process")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    args = p.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found: the benchmark reads ../shared/data")
    threads = max(1, (os.cpu_count() or 2) // args.processes)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(threads)}
    cpu = cpu_info()
    print(f"{cpu['cpu']} ({os.cpu_count()} cores); SmolLM2-135M full fine-tuning, {args.precision}, "
          f"{args.processes} processes x batch {args.batch_size}, {args.steps} steps, {threads} threads each",
          flush=True)
    runs = []
    for _ in range(args.reps):
        for strategy in ("ddp", "fsdp"):
            result = run_side(args, strategy, env)
            runs.append(result)
            rss = ", ".join(f"{mb:,.0f}" for mb in result["peak_rss_mb_per_process"])
            print(f"  {strategy:4}  peak RSS per process {rss} MB  {result['real_tokens_per_s']:.1f} real tokens/s  "
                  f"last loss {result['last_loss']:.4f}", flush=True)
    arithmetic = shard_arithmetic(runs[0]["params"], args.processes)
    print(f"  arithmetic for {runs[0]['params']:,} parameters: weights+gradients+AdamW {arithmetic['weights_grads_adam_mb_ddp']:,} MB "
          f"per DDP process, {arithmetic['weights_grads_adam_mb_fsdp']:,} MB per FSDP process "
          f"(+ the {arithmetic['whole_model_load_mb']:,} MB whole-model load both start with)")
    best = {s: min(max(r["peak_rss_mb_per_process"]) for r in runs if r["strategy"] == s) for s in ("ddp", "fsdp")}
    print(f"  highest per-process peak, best run: ddp {best['ddp']:,.0f} MB, fsdp {best['fsdp']:,.0f} MB "
          f"(fsdp/ddp {best['fsdp'] / best['ddp']:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "args": vars(args), "runs": runs,
                                               "arithmetic": arithmetic, "best_peak_mb": best}, indent=2))


if __name__ == "__main__":
    main()
