"""Data preparation at size: tunelab (first run, cached run) against TRL's SFTTrainer, same files.

    python benchmarks/data_bench.py [--rows 55000 220000 1000000] [--sides tunelab,cached,trl] [--json OUT]
                                    [--plot PNG]
    python benchmarks/data_bench.py --plot PNG --from OUT1.json [OUT2.json ...]   # redraw saved runs

The files are built under /tmp from the seven real T0 tasks in ../shared/data/t0_multitask_mix
(1,400 prompt / completion rows, `<|endoftext|>` stripped), repeated until the row count is
reached, every copy's prompt given a unique suffix (` [copy N]`) so that no two rows are equal
(the leak check and the splits see distinct inputs). Each side runs in its own subprocess, one
after another, on the same file in the same run:
  tunelab   `tunelab.train.train` with a tiny random Llama (SmolLM2's tokenizer) for 2 steps:
            prepare() timed on its own (an empty cache), then the whole training command's peak
            RSS (VmHWM): data fingerprint, training keys, the epoch plan and the batches included;
            the preparation's worker processes (data.num_proc: every core) apart, the largest one
  cached    the same again: prepare() loads the cache the first side wrote
  trl       SFTTrainer(dataset_num_proc=2) on the same JSONL (datasets.load_dataset, its cache in
            a fresh folder): the time to build the trainer, which tokenises the dataset, and the
            process's peak RSS; same tokenizer, max_length, completion-only loss
Rows/s is the file's rows over the preparation time. The CPU model and core count are printed.
--plot draws peak RSS against rows on log-log axes (each side, and a line of slope 1 through the
first run's smallest point: a side below it grows sublinearly).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "t0_multitask_mix"
MAX_LENGTH = 512


def build_file(rows: int, folder: Path) -> Path:
    path = folder / f"t0_{rows}.jsonl"
    if path.exists():
        return path
    base = []
    for f in sorted(SHARED.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            base.append((r["prompt"], r["completion"].removesuffix("<|endoftext|>")))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for i in range(rows):
            prompt, completion = base[i % len(base)]
            out.write(json.dumps({"prompt": f"{prompt} [copy {i // len(base)}]", "completion": completion}) + "\n")
    tmp.rename(path)
    return path


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tiny_model(folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tunelab.models import resolve_model

    if (folder / "config.json").exists():
        return folder
    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def worker_tunelab(args) -> dict:
    from transformers import AutoTokenizer

    from tunelab.config import load_config
    from tunelab.data import prepare
    from tunelab.train import train

    cfg = load_config(data={
        "name": f"bench_{args.rows}_{args.side}", "output_dir": args.work, "seed": 0,
        "model": {"name": args.model},
        "data": {"max_length": MAX_LENGTH, "cache": str(Path(args.work) / "cache"),
                 "tasks": [{"name": "t0", "kind": "completion", "source": args.file, "chat_template": False}]},
        "train": {"method": "full", "max_steps": 2, "batch_size": 4, "precision": "fp32", "progress": "off",
                  "eval_limit": 64},  # the final validation on 64 examples: data, not the model, is measured
    })
    tok = AutoTokenizer.from_pretrained(args.model)
    start = time.perf_counter()
    data = prepare(cfg, tok, bars=False)
    prep = time.perf_counter() - start
    prep_rss = peak_rss_mb()
    workers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest worker process
    start = time.perf_counter()
    train(cfg, data=data)
    return {"prep_s": prep, "prep_peak_rss_mb": prep_rss, "workers_peak_rss_mb": workers_rss,
            "train_s": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
            "train_examples": len(data.tasks["t0"].splits["train"])}


def worker_trl(args) -> dict:
    os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(dir=args.work, prefix="hf_datasets_")
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    start = time.perf_counter()
    dataset = load_dataset("json", data_files=args.file, split="train")
    sft = SFTConfig(output_dir=tempfile.mkdtemp(dir=args.work), max_length=MAX_LENGTH, completion_only_loss=True,
                    dataset_num_proc=2, use_cpu=True, report_to=[], save_strategy="no", max_steps=2,
                    per_device_train_batch_size=4)
    trainer = SFTTrainer(model=model, args=sft, train_dataset=dataset, processing_class=tok)
    prep = time.perf_counter() - start
    return {"prep_s": prep, "prep_peak_rss_mb": peak_rss_mb(), "train_examples": len(trainer.train_dataset)}


def run_side(side: str, rows: int, file: Path, work: Path, model: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--file", str(file), "--work", str(work),
           "--model", str(model), "--rows", str(rows)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}  # as the CLI sets it (cli/quiet.py)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{side} on {rows} rows failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot_memory(runs: dict, out: str, cpu: str) -> None:
    """Peak RSS of each side against the row count, log-log, with linear growth for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(runs, key=int)
    fig, ax = plt.subplots(figsize=(6, 4))
    sides = (("tunelab", "peak_rss_mb", "tunelab, first run (whole 2-step command)"),
             ("cached", "peak_rss_mb", "tunelab, cached run (whole command)"),
             ("trl", "prep_peak_rss_mb", "TRL SFTTrainer preparation (num_proc 2)"))
    for side, key, label in sides:
        points = [(int(r), runs[r][side][key]) for r in rows if side in runs[r]]
        if points:
            ax.plot(*zip(*points), marker="o", label=label)
    first = [(int(r), runs[r]["tunelab"]["peak_rss_mb"]) for r in rows if "tunelab" in runs[r]]
    if first:
        x0, y0 = first[0]
        xs = [int(r) for r in rows]
        ax.plot(xs, [y0 * x / x0 for x in xs], linestyle=":", color="grey", label="linear growth from the first point")
    ax.set(xscale="log", yscale="log", xlabel="rows (JSONL)", ylabel="peak RSS (MB)",
           title=f"Peak memory against rows ({cpu})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot: {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plot", help="draw peak RSS against rows into this PNG")
    ap.add_argument("--from", dest="sources", nargs="+", help="saved --json files to plot instead of running")
    ap.add_argument("--rows", type=int, nargs="+", default=[55_000, 220_000, 1_000_000])
    ap.add_argument("--sides", default="tunelab,cached,trl")
    ap.add_argument("--json")
    ap.add_argument("--worker")
    ap.add_argument("--file")
    ap.add_argument("--work")
    ap.add_argument("--model")
    ap.add_argument("--side", default="tunelab")
    args = ap.parse_args()
    if args.worker:
        args.rows = args.rows[0]
        args.side = args.worker
        result = worker_trl(args) if args.worker == "trl" else worker_tunelab(args)
        print(json.dumps(result))
        return
    if args.sources:  # redraw saved runs, nothing measured
        runs, cpu = {}, ""
        for source in args.sources:
            saved = json.loads(Path(source).read_text(encoding="utf-8"))
            runs.update(saved["runs"])
            cpu = saved["cpu"]["cpu"]
        return plot_memory(runs, args.plot or "data_memory.png", cpu)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import cpu_info

    info = cpu_info()
    print(f"CPU: {info['cpu']}, {info['logical_cores']} logical cores", flush=True)
    folder = Path(tempfile.gettempdir()) / "tunelab_data_bench"
    folder.mkdir(exist_ok=True)
    model = tiny_model(folder / "tiny_llama")
    results = {"cpu": info, "runs": {}}
    for rows in args.rows:
        file = build_file(rows, folder)
        with tempfile.TemporaryDirectory(dir=folder) as work:
            found = {}
            for side in args.sides.split(","):
                found[side] = run_side(side, rows, file, Path(work), model)
                r = found[side]
                workers = f"  (largest worker {r['workers_peak_rss_mb']:.0f} MB)" if r.get("workers_peak_rss_mb") else ""
                print(f"{rows:>9} rows  {side:<8} prep {r['prep_s']:8.1f} s  {rows / r['prep_s']:9.0f} rows/s  "
                      f"peak RSS {r.get('peak_rss_mb', r['prep_peak_rss_mb']):7.0f} MB{workers}", flush=True)
            results["runs"][rows] = {"file_mb": file.stat().st_size / 2**20, **found}
            if "tunelab" in found and "cached" in found:
                print(f"{'':>9}       cached speed-up {found['tunelab']['prep_s'] / found['cached']['prep_s']:.0f}x",
                      flush=True)
            if "tunelab" in found and "trl" in found:
                print(f"{'':>9}       tunelab vs TRL (num_proc 2): "
                      f"{found['trl']['prep_s'] / found['tunelab']['prep_s']:.2f}x faster", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    if args.plot:
        plot_memory(results["runs"], args.plot, info["cpu"])


if __name__ == "__main__":
    main()
