"""tunelab vs TRL's SFTTrainer: SmolLM2-135M LoRA SFT on real instruction data, bf16 (or fp32), CPU.

    python benchmarks/train_bench.py [--json OUT] [--steps 16] [--reps 2] [--trl-mode padding_free]
                                     [--checkpoint-every N]

Both trainers get the same tokenised examples (tunelab's data pipeline on the Alpaca demo set
from ../shared/data, mixed lengths, completion-only labels), the same LoRA (r 8, alpha 16,
all-linear), optimizer (AdamW, lr 1e-3, linear decay, clipping 1.0), batch size and number of
steps. Runs alternate (tunelab, TRL, tunelab, TRL, ...) and each is its own subprocess, so peak RSS
is per run. Reported per run:
  real tokens/s  non-padding tokens of steps 2..N over the wall time from the end of step 1 to
                 the end of step N (the first step warms up kernels in both)
  peak RSS       the worker's peak resident memory from the model load to the end of training
                 (evaluation not included): VmHWM, reset just before the load on both sides
  MFU            real tokens/s x LoRA model FLOPs per real token (benchmarks/machine.py, averaged
                 over the training split) / the bf16 (or fp32) matmul peak measured at the start
  val loss       the same completion-only cross-entropy code on the same 64 validation
                 examples, applied to each trained model
The best (highest tokens/s) run of each side is compared; all runs are printed. With
--checkpoint-every N a third side runs tunelab with gradient checkpointing of every N-th decoder
layer (train.gradient_checkpointing_every): less memory for some speed. With --compare-src DIR a
side `tunelab_ref` runs the tunelab package found in DIR (e.g. the src/ of a `git worktree` of an
earlier commit), so a change to the training loop is measured against the code before it, in the
same run, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Shapes, Work, describe, machine_report, training_flops  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "instructions" / "llamafactory_alpaca_en_demo.json"
LR, RANK, ALPHA = 1e-3, 8, 16


def reset_peak_rss() -> None:
    """Count peak memory from here on (Linux: reset the process's high-water mark, VmHWM). Here,
    not tunelab.train.run's: the benchmark measures TRL and, with --compare-src, another tunelab."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def experiment(args, out_dir: str, name: str) -> dict:
    return {
        "name": name, "seed": 0, "output_dir": out_dir,
        "model": {"name": "smollm2-135m-instruct", "attn_implementation": args.attn_implementation},
        "data": {"max_length": args.max_length, "split": {"train": 0.9, "validation": 0.1, "test": 0.0},
                 "tasks": [{"name": "alpaca", "kind": "instruction", "source": {"path": str(DATA)}}]},
        "train": {"method": "lora", "lr": LR, "max_steps": args.steps, "batch_size": args.batch_size,
                  "precision": args.precision, "scheduler": "linear", "max_grad_norm": 1.0, "optimizer": "adamw",
                  "lora": {"r": RANK, "alpha": ALPHA, "target_modules": "all-linear"},
                  "half_frozen_weights": not args.fp32_base, "progress": "off", "keep_last": 1,
                  "keep_best": False, "packing": args.tunelab_packing,
                  "gradient_checkpointing": bool(args.checkpoint_every),
                  "gradient_checkpointing_every": args.checkpoint_every or 1, **compile_key(args)},
    }


def compile_key(args) -> dict:
    """train.compile as --compile says; nothing for a tunelab before the key (a --compare-src side)."""
    from tunelab.config.train import TrainConfig

    if "compile" not in TrainConfig.model_fields:
        return {}
    return {"compile": {"auto": "auto", "true": True, "false": False}[args.compile]}


def validation_loss(model, examples, bf16: bool) -> float:
    """Mean completion-token cross-entropy, bf16 autocast, the same code for both trainers."""
    import torch

    from tunelab.train.batching import collate, to_sequences
    from tunelab.train.loss import CompletionLoss

    loss_model = CompletionLoss(model, "causal", "lora").eval()
    seqs = to_sequences(examples)
    total, n = 0.0, 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(seqs), 16):
            loss_sum, count = loss_model(**collate(seqs[s:s + 16], 0).tensors)
            total, n = total + float(loss_sum), n + int(count)
    return total / n


def worker_tunelab(args, cfg, data) -> dict:
    from tunelab.config import load_config
    from tunelab.models import load_model
    from tunelab.train import train

    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(data=experiment(args, out, "bench"))
        reset_peak_rss()  # both sides count memory from the model load on
        run = train(cfg, data=data)
        rss = peak_rss_mb()
        steps = [json.loads(line) for line in open(run / "metrics.jsonl") if '"loss"' in line]
        model, _ = load_model(cfg.model, adapter=str(run))
        val = validation_loss(model, data.tasks["alpaca"].splits["validation"][:64], args.precision == "bf16")
    tokens = sum(s["real_tokens"] for s in steps[1:])
    seconds = steps[-1]["elapsed_s"] - steps[0]["elapsed_s"]
    return {"tokens_per_s": tokens / seconds, "peak_rss_mb": rss, "val_loss": val, "steps": len(steps),
            "first_step_s": steps[0]["elapsed_s"],
            "padding_tokens": sum(s["padding_tokens"] for s in steps[1:]), "real_tokens": tokens}


def worker_trl(args, cfg, data) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunelab.models import resolve_model

    examples = [data.train_epoch(e, 0) for e in range(3)]
    rows = [{"input_ids": list(x.input_ids), "completion_mask": [0 if t == -100 else 1 for t in x.label_ids]}
            for epoch in examples for x in epoch]
    path = resolve_model("smollm2-135m-instruct")
    reset_peak_rss()  # both sides count memory from the model load on (tunelab's train() resets there)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        sft = SFTConfig(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1, learning_rate=LR, lr_scheduler_type="linear", warmup_steps=0,
            weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", bf16=args.precision == "bf16", use_cpu=True,
            logging_steps=1, save_strategy="no", report_to=[], seed=0,
            # padding-free without packing refuses a max_length: the examples are already cut to it
            max_length=None if args.trl_mode == "padding_free" else args.max_length,
            completion_only_loss=True, dataloader_num_workers=0,
            padding_free=args.trl_mode == "padding_free", packing=args.trl_mode == "packing",
        )
        peft_config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=sft, train_dataset=Dataset.from_list(rows), peft_config=peft_config,
                             callbacks=[Clock()])
        trainer.train()
        rss = peak_rss_mb()
        logs = [h for h in trainer.state.log_history if "num_tokens" in h]
        val = validation_loss(trainer.model, data.tasks["alpaca"].splits["validation"][:64], args.precision == "bf16")
    tokens = logs[-1]["num_tokens"] - logs[0]["num_tokens"]
    return {"tokens_per_s": tokens / (ends[-1] - ends[0]), "peak_rss_mb": rss, "val_loss": val,
            "steps": len(ends), "real_tokens": tokens}


def flops_per_token(examples) -> float:
    """LoRA training model FLOPs per real token, averaged over the training split (machine.py):
    both trainers draw their batches from it, so the same factor turns tokens/s into FLOP/s."""
    from transformers import AutoConfig

    from tunelab.models import resolve_model

    work = Work()
    for e in examples:
        work.add_sequence(len(e.input_ids), sum(1 for t in e.label_ids if t != -100))
    shapes = Shapes.of(AutoConfig.from_pretrained(resolve_model("smollm2-135m-instruct")))
    return training_flops(shapes, work, "lora") / work.tokens


def worker_profile(args, cfg, data) -> dict:
    """One tunelab run under torch.profiler: where its steps' time goes (step_profile.py)."""
    from tunelab.config import load_config
    from tunelab.train import train
    from step_profile import profile_run

    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(data=experiment(args, out, "bench"))
        return {"profile": profile_run(train, cfg, data, args.steps, RANK, 49152)}


def worker(args) -> None:
    import torch
    from transformers import AutoTokenizer

    from tunelab.config import load_config
    from tunelab.data import prepare
    from tunelab.models import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(data=experiment(args, "/tmp", "bench"))
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    data = prepare(cfg, tokenizer)
    if args.worker == "profile":
        Path(args.result).write_text(json.dumps(worker_profile(args, cfg, data)))
        return
    result = (worker_trl if args.worker == "trl" else worker_tunelab)(args, cfg, data)
    result["model_flops_per_token"] = flops_per_token(data.tasks["alpaca"].splits["train"])
    Path(args.result).write_text(json.dumps(result))


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def worker_env() -> dict:
    """The workers' environment: offline (the hub is not needed: the model and data are local), quiet."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "TRL_EXPERIMENTAL_SILENCE": "1"}


def run_json_worker(name: str, cmd: list[str], env: dict) -> dict:
    """Run `cmd` + ["--result", FILE] as a subprocess; the JSON it wrote to FILE (exits on failure)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        done = subprocess.run([*cmd, "--result", out], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{name} run failed:\n{done.stderr[-4000:]}")
        return json.loads(Path(out).read_text())
    finally:
        os.unlink(out)


def run_worker(kind: str, args, env: dict, every: int, src: str | None) -> dict:
    """One worker subprocess (`kind`: tunelab, trl or profile); its result. `src`: another
    tunelab's src/ first on the path."""
    cmd = [sys.executable, __file__, "--worker", kind,
           "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--max-length", str(args.max_length), "--threads", str(args.threads),
           "--trl-mode", args.trl_mode, "--precision", args.precision, "--checkpoint-every", str(every)]
    cmd += ["--tunelab-packing"] if args.tunelab_packing else []
    cmd += ["--attn-implementation", args.attn_implementation] if args.attn_implementation else []
    cmd += ["--fp32-base"] if args.fp32_base else []
    cmd += ["--compile", args.compile]
    side_env = dict(env)
    if src:
        side_env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return run_json_worker(kind, cmd, side_env)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write {'comparisons': [...]} here")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--reps", type=int, default=2, help="runs per side, alternating")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    p.add_argument("--trl-mode", choices=["padding_free", "packing", "padded"], default="padding_free")
    p.add_argument("--tunelab-packing", action="store_true")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                   help="bf16 autocast for both (the target setting); fp32 on CPUs without native bf16")
    p.add_argument("--fp32-base", action="store_true", help="tunelab keeps the frozen base in fp32 too")
    p.add_argument("--compile", choices=["auto", "true", "false"], default="true",
                   help="tunelab's train.compile (default true: auto would not compile a run this short, and "
                        "the steps timed are the steady state; the first step's time, compile included, is printed)")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="also run tunelab with gradient checkpointing of every N-th layer (memory for speed)")
    p.add_argument("--compare-src", help="a src/ folder holding another tunelab: a `tunelab_ref` side")
    p.add_argument("--skip-trl", action="store_true", help="with --compare-src: only the two tunelab sides")
    p.add_argument("--attn-implementation", help="tunelab's model.attn_implementation (default: transformers')")
    p.add_argument("--profile", action="store_true",
                   help="then one more tunelab run under torch.profiler: where a step's time goes, by class")
    p.add_argument("--worker", choices=["tunelab", "trl", "profile"], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if not DATA.exists():
        sys.exit(f"{DATA} not found: the benchmark reads ../shared/data")
    env = worker_env()
    sides = {"tunelab": 0, "trl": 0}
    if args.checkpoint_every:
        sides = {"tunelab": 0, f"tunelab_ckpt{args.checkpoint_every}": args.checkpoint_every, "trl": 0}
    if args.compare_src:
        sides = {"tunelab": 0, "tunelab_ref": 0, **{k: v for k, v in sides.items() if k != "tunelab"}}
        if args.skip_trl:
            sides.pop("trl")
    results: dict[str, list[dict]] = {side: [] for side in sides}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    machine = machine_report()  # the peak in this run, before the first worker
    peak = machine["peak_flops"]["bfloat16" if args.precision == "bf16" else "float32"]
    print(describe(machine), flush=True)
    print(f"SmolLM2-135M LoRA SFT, {args.precision}, batch {args.batch_size}, {args.steps} steps, max_length "
          f"{args.max_length}, TRL mode {args.trl_mode}, tunelab train.compile {args.compile}; load average at start "
          f"{load_average()}", flush=True)
    for rep in range(args.reps):
        for side, every in sides.items():
            t0 = time.perf_counter()
            r = run_worker("trl" if side == "trl" else "tunelab", args, env, every,
                           args.compare_src if side == "tunelab_ref" else None)
            r["model_flops_per_s"] = r["tokens_per_s"] * r["model_flops_per_token"]
            r["mfu"] = r["model_flops_per_s"] / peak
            results[side].append(r)
            print(f"  rep {rep + 1} {side:<16} {r['tokens_per_s']:8.1f} real tok/s  MFU {r['mfu']:6.1%}"
                  f"  peak RSS {r['peak_rss_mb']:7.0f} MB"
                  f"  val loss {r['val_loss']:.4f}"
                  + (f"  first step {r['first_step_s']:.1f} s" if "first_step_s" in r else "")
                  + f"  ({time.perf_counter() - t0:.0f} s, load {load_average()})",
                  flush=True)
    profile = None
    if args.profile:
        from step_profile import print_breakdown

        profile = run_worker("profile", args, env, 0, None)["profile"]
        print_breakdown(profile, machine.get("cpu", "this CPU"))
    if not args.reps:
        if args.json:
            Path(args.json).write_text(json.dumps({"profile": profile, "machine": machine, "settings": vars(args)},
                                                  indent=2))
        return
    best = {side: max(rs, key=lambda r: r["tokens_per_s"]) for side, rs in results.items()}
    base = best.get("trl")
    comparisons = []
    for side in sides:
        if side == "trl" or base is None:
            continue
        ours, suffix = best[side], side[len("tunelab"):]
        comparisons += [
            {"name": f"real_tokens_per_s{suffix}", "baseline": base["tokens_per_s"], "ours": ours["tokens_per_s"],
             "ratio": ours["tokens_per_s"] / base["tokens_per_s"]},
            {"name": f"peak_rss_mb{suffix}", "baseline": base["peak_rss_mb"], "ours": ours["peak_rss_mb"],
             "ratio": ours["peak_rss_mb"] / base["peak_rss_mb"]},
        ]
        trl_loss = statistics.mean(r["val_loss"] for r in results["trl"])
        our_loss = statistics.mean(r["val_loss"] for r in results[side])
        comparisons.append({"name": f"val_loss{suffix}", "baseline": trl_loss, "ours": our_loss,
                            "ratio": our_loss / trl_loss})
    if args.compare_src:  # this tunelab against the other one
        ref, ours = best["tunelab_ref"], best["tunelab"]
        comparisons.append({"name": "real_tokens_per_s_vs_ref", "baseline": ref["tokens_per_s"],
                            "ours": ours["tokens_per_s"], "ratio": ours["tokens_per_s"] / ref["tokens_per_s"]})
        median = {side: statistics.median(r["tokens_per_s"] for r in results[side]) for side in ("tunelab", "tunelab_ref")}
        comparisons.append({"name": "median_tokens_per_s_vs_ref", "baseline": median["tunelab_ref"],
                            "ours": median["tunelab"], "ratio": median["tunelab"] / median["tunelab_ref"]})
    print(f"\n{'':<28}{'baseline':>12}{'tunelab':>12}{'ratio':>9}   (baseline: TRL, or tunelab_ref for *_vs_ref)")
    for c in comparisons:
        print(f"{c['name']:<28}{c['baseline']:12.2f}{c['ours']:12.2f}{c['ratio']:9.3f}")
    for side, r in best.items():
        print(f"{side:<28}{r['model_flops_per_s'] / 1e9:8.1f} model GFLOP/s = {r['mfu']:.1%} MFU "
              f"({r['model_flops_per_token'] / 1e9:.3f} GFLOP per real token)")
    print("targets: tokens/s ratio >= 3, peak RSS ratio <= 1.0, val loss within 2%")
    print(f"load average at end {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"comparisons": comparisons, "runs": results, "machine": machine,
                                               "profile": profile,
                                               "mfu": {side: r["mfu"] for side, r in best.items()},
                                               "settings": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
