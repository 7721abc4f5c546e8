"""tunelab on a busy machine: three training runs at once against the same runs one after another.

    python benchmarks/busy_machine.py [--steps 15] [--spin 300000 10000 0] [--json OUT]

Each run is `tunelab train` of SmolLM2-135M LoRA (r 8, all-linear) on the demo's sentiment
reviews, batch 8, bf16 where native (train.precision auto), no evaluation: a whole process, model
load included. For each OpenMP spin count (GOMP_SPINCOUNT; 300000 is libgomp's own default, which
tunelab used before it set one; 0 is OMP_WAIT_POLICY=PASSIVE) it times one run alone (twice: the
median) and three runs started together (until the last ends), and prints the ratio of the three
together to three times one alone ("one after another"). Run it on an otherwise idle machine.
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

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "tunelab" / "experiments" / "demo_data" / "sentiment.jsonl"


def config(folder: Path, name: str, steps: int) -> Path:
    import yaml

    raw = {"name": name, "seed": 0, "output_dir": str(folder), "model": {"name": "smollm2-135m-instruct"},
           "data": {"max_length": 256, "tasks": [{
               "name": "sentiment", "kind": "classification", "source": {"path": str(DATA)},
               "fields": {"text": "text", "label": "label"}, "labels": ["negative", "positive"],
               "ratios": {"train": 0.6, "validation": 0.05, "test": 0.35}}]},
           "train": {"method": "lora", "max_steps": steps, "batch_size": 8, "progress": "off", "keep_last": 1}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def env_for(spin: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["GOMP_SPINCOUNT"] = str(spin)  # set explicitly: tunelab keeps what the user set
    return env


def run_together(folder: Path, names: list[str], steps: int, spin: int) -> float:
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "tunelab.cli", "train", str(config(folder, n, steps), )],
                              env=env_for(spin), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for n in names]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a run failed: {err.decode()[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--spin", type=int, nargs="+", default=[300000, 10000, 0])
    parser.add_argument("--json")
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    print(f"{cpu}, {len(os.sched_getaffinity(0))} CPUs; SmolLM2 LoRA, {args.steps} steps a run")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for spin in args.spin:
            folder = Path(tmp) / f"spin-{spin}"
            folder.mkdir()
            alone = [run_together(folder, [f"alone-{k}"], args.steps, spin) for k in range(2)]
            together = run_together(folder, ["a", "b", "c"], args.steps, spin)
            one = statistics.median(alone)
            row = {"spin": spin, "alone_s": [round(a, 1) for a in alone], "three_together_s": round(together, 1),
                   "ratio_to_one_after_another": round(together / (3 * one), 2)}
            results.append(row)
            print(f"GOMP_SPINCOUNT={spin:>7}: one alone {one:6.1f} s ({', '.join(f'{a:.1f}' for a in alone)}); "
                  f"three at once {together:6.1f} s = {row['ratio_to_one_after_another']}x one after another")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "steps": args.steps, "results": results}, indent=1))


if __name__ == "__main__":
    main()
