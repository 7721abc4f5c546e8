"""Scaling instruction tuning over more tasks, in small (after FLAN, Chung et al. 2022): the same
recipe trained on mixtures of 1, 2, 4 and 6 tasks of ../shared/data/t0_multitask_mix, each model
scored on a task none of them trained on. Does the held-out score grow with the number of tasks?

    python examples/scaling_tasks.py                         # SmolLM2-135M, 1/2/4/6 tasks (~20 min, 2 CPU cores)
    python examples/scaling_tasks.py --counts 1,6 --steps 30
    python examples/scaling_tasks.py --models smollm2-135m-instruct,PATH/OTHER   # one curve per model

It is a tunelab study (tunelab.experiments.study): one ordinary training run per mixture, every
run scored before and after by the evaluation engine on the same held-out examples, compared
with the base model with paired tests. The script adds the curve: the held-out score (with its
95% CI) against the number of training tasks, the base model at 0. It writes, under
`runs/scaling-tasks/`, one study folder per model (report.html, compare.json) and `scaling.json`
+ `scaling.png` + `scaling.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T0 = ROOT.parent / "shared" / "data" / "t0_multitask_mix"
# Training tasks in the order they join the mixture; the held-out task is never trained on.
TRAINING = ["ag_news_classify_with_choices", "commonsense_qa_question_answering", "glue_mrpc_paraphrase",
            "common_gen_Given_concepts_type_1", "samsum_Summarize_this_dialogue_", "xsum_DOC_tldr"]
HELD_OUT = "rotten_tomatoes_Movie_Expressed_Sentiment"


def task(stem: str) -> dict:
    """A T0 file as a data task: prompt/completion, the literal <|endoftext|> stripped."""
    return {"name": stem.split("_")[0], "kind": "completion", "source": {"path": str(T0 / f"{stem}.jsonl")},
            "strip_suffix": ["<|endoftext|>"], "ratios": {"train": 0.75, "validation": 0.0, "test": 0.25}}


def study_config(model: str, counts: list[int], args) -> dict:
    first = task(TRAINING[0])
    held = {"recipe": "t0", "path": str(T0 / f"{HELD_OUT}.jsonl"), "name": "held_out"}
    return {
        "name": f"scaling-{Path(model).name}", "seed": args.seed, "output_dir": str(args.output),
        "model": {"name": model},
        "data": {"max_length": 384, "mixture": {"strategy": "equal"}, "tasks": [first]},
        "train": {"method": "lora", "lr": args.lr, "max_steps": args.steps, "batch_size": 8, "precision": "auto",
                  "scheduler": "linear", "warmup_steps": 5, "keep_last": 1, "progress": "plain",
                  "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"}},
        # The first task's own test split (every mixture trains on it) and the held-out task.
        "forgetting": {"tasks": [first["name"], held], "limit": args.limit, "bootstrap_resamples": 1000},
        "study": {"tuned_task": first["name"],
                  "systems": {f"tasks-{n}": {"data.tasks": [task(s) for s in TRAINING[:n]]} for n in counts}},
    }


def curve(study_dir: Path, counts: list[int]) -> list[dict]:
    """(number of training tasks, held-out score and CI, change vs base with its paired CI)."""
    table = json.loads((study_dir / "compare.json").read_text())
    row = next(r for r in table["rows"] if r["task"] == "held_out" and r["primary"])
    points = [{"tasks": 0, "metric": row["metric"], **row["values"][0], "change": None}]
    for n, value, test in zip(counts, row["values"][1:], row["tests"][1:]):
        points.append({"tasks": n, "metric": row["metric"], **value,
                       "change": {k: test[k] for k in ("diff", "ci", "p_value")}})
    return points


def plot(curves: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for model, points in curves.items():
        x = [p["tasks"] for p in points]
        y = [p["value"] for p in points]
        err = [[p["value"] - p["ci"][0] for p in points], [p["ci"][1] - p["value"] for p in points]]
        ax.errorbar(x, y, yerr=err, fmt="o-", capsize=4, label=model)
    ax.set_xlabel("training tasks in the mixture (0 = the base model)")
    ax.set_ylabel(f"held-out {HELD_OUT.split('_')[0]}: {points[0]['metric']}")
    ax.set_xticks(sorted({p["tasks"] for pts in curves.values() for p in pts}))
    ax.set_title("held-out score vs number of training tasks (95% CIs)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)


def markdown(curves: dict) -> str:
    from tunelab.metrics.stats import p_clause

    lines = ["| model | training tasks | held-out score [95% CI] | change vs base [paired 95% CI] (p) |",
             "|---|---|---|---|"]
    for model, points in curves.items():
        for p in points:
            c = p["change"]
            change = "-" if c is None else (f"{c['diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] "
                                             f"({p_clause(c['p_value'])})")
            lines.append(f"| {model} | {p['tasks']} | {p['value']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}] | {change} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm2-135m-instruct", help="comma-separated: one curve per model")
    p.add_argument("--counts", default="1,2,4,6", help="numbers of training tasks (at most 6)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--limit", type=int, default=50, help="held-out examples scored per system")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=ROOT / "runs" / "scaling-tasks")
    p.add_argument("--resume", action="store_true", help="continue the studies (finished systems are kept)")
    args = p.parse_args()
    if not T0.exists():
        sys.exit(f"{T0} not found: this example reads the T0 files beside the checkout (../shared/data)")
    counts = [int(c) for c in args.counts.split(",")]
    if not counts or max(counts) > len(TRAINING) or min(counts) < 1:
        sys.exit(f"--counts: numbers between 1 and {len(TRAINING)}")

    from tunelab.cli.quiet import quiet_third_party

    quiet_third_party()  # as the tunelab command does: no third-party progress bars or warnings
    from tunelab.config import load_config
    from tunelab.experiments.study import run_study

    curves = {}
    for model in args.models.split(","):
        cfg = load_config(data=study_config(model, counts, args))
        folder = run_study(cfg, resume=args.resume, log=lambda m: print(m, file=sys.stderr, flush=True))
        curves[model] = curve(folder, counts)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "scaling.json").write_text(json.dumps(curves, indent=2))
    (args.output / "scaling.md").write_text(markdown(curves))
    plot(curves, args.output / "scaling.png")
    print(markdown(curves))
    print(f"plot: {args.output / 'scaling.png'}")


if __name__ == "__main__":
    main()
