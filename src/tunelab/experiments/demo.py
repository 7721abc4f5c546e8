"""`tunelab demo`: the seed's whole story on the embedded SmolLM2-135M-Instruct, offline.

  1. before   the base model answers a sentiment question with sentences (label extraction
              counts the outputs it cannot map), and answers short factual questions;
  2. tune     LoRA on sentiment only: it answers with labels, accuracy and F1 rise;
  3. forget   the factual QA measured before and after: whatever happens is reported;
  4. remedy   a LoRA run on a sentiment + QA mixture, and full fine-tuning on sentiment only,
              in one forgetting table with paired-bootstrap CIs;
  5. report   results.json, compare.json, report.html (every system side by side: metric bars,
              the gain-vs-forgetting plot, per-task tables, costs, links to each run's report)
              and a summary table; the report's path is printed last.

Everything goes through the public APIs of the pipeline (tunelab.data, tunelab.train,
tunelab.evaluate, tunelab.metrics, tunelab.report); this module only decides what to run and
prints the story. The data is built in (demo_data/, written for tunelab). Each phase is timed:
the whole demo is planned to fit 15 minutes on an idle 2-core CPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tunelab.files import write_json, write_text
from tunelab.metrics.stats import p_clause

DATA_DIR = Path(__file__).resolve().parent / "demo_data"
MODEL = "smollm2-135m-instruct"
LABELS = ["negative", "positive"]


@dataclass
class DemoPlan:
    """What the demo runs. The defaults are the real demo; `quick()` is for tests."""

    steps: int = 70  # optimizer steps per training run
    batch_size: int = 8
    lora_lr: float = 3e-4
    full_lr: float = 3e-5
    full_finetune: bool = True  # the "full vs LoRA" comparison (the slowest run)
    eval_limit: int | None = None  # None: the whole test split of each task
    sentiment_new_tokens: int = 20  # enough for the base model's first sentence
    qa_new_tokens: int = 16
    eval_batch_size: int = 16
    bootstrap: int = 1000

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(steps=2, batch_size=4, eval_limit=6, sentiment_new_tokens=4, qa_new_tokens=4,
                   eval_batch_size=8, bootstrap=100)


# --- the two built-in tasks, as data-pipeline task configs ------------------------------------

def sentiment_task() -> dict:
    return {
        "name": "sentiment",
        "kind": "classification",
        "source": {"path": str(DATA_DIR / "sentiment.jsonl")},
        "fields": {"text": "text", "label": "label"},
        "labels": LABELS,
        "instruction": "Is the sentiment of this review positive or negative?",
        # 320 reviews -> about 192 train, 16 validation, 112 test (stratified, seeded).
        "ratios": {"train": 0.6, "validation": 0.05, "test": 0.35},
    }


def qa_task() -> dict:
    return {
        "name": "qa",
        "kind": "qa",
        "source": {"path": str(DATA_DIR / "qa.jsonl")},
        "fields": {"question": "question", "answer": "answers"},
        "instruction": "Answer the question in a few words.",
        # 100 questions -> 40 train (used only by the mixture run), 60 test.
        "ratios": {"train": 0.4, "validation": 0.0, "test": 0.6},
    }


def eval_task(task: dict, plan: DemoPlan) -> dict:
    """The evaluation view of a task: its test split, scored with the metrics of its kind."""
    if task["kind"] == "classification":
        return {**task, "max_new_tokens": plan.sentiment_new_tokens}
    # token F1 first: it is the QA metric the forgetting test pairs on (exact match is 0 for a
    # model that answers in sentences, so its change would say more about answer shape).
    return {**task, "max_new_tokens": plan.qa_new_tokens, "metrics": ["token_f1", "exact_match"]}


# --- training runs -------------------------------------------------------------------------

def run_config(name: str, out: Path, model: str, tasks: list[dict], method: str, plan: DemoPlan, seed: int):
    from tunelab.config import load_config

    raw = {
        "name": name,
        "seed": seed,
        "output_dir": str(out),
        "model": {"name": model},
        "data": {
            "tasks": tasks,
            "max_length": 256,
            # The mixture run samples the two tasks in proportion to their training sizes.
            "mixture": {"strategy": "proportional"},
        },
        "train": {
            "method": method,
            "lr": plan.lora_lr if method == "lora" else plan.full_lr,
            "max_steps": plan.steps,
            "batch_size": plan.batch_size,
            "precision": "bf16",
            "scheduler": "linear",
            "warmup_steps": max(1, plan.steps // 10),
            "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"},
            "checkpoint_every": None,
            "keep_last": 1,
        },
    }
    return load_config(data=raw)


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    cpu_s: float = 0.0  # process CPU time: with wall time, tells a busy machine from slow work
    detail: str = ""


@dataclass
class DemoState:
    folder: Path
    seed: int
    plan: DemoPlan
    model: str
    phases: list[Phase] = field(default_factory=list)
    evaluations: dict = field(default_factory=dict)  # system -> task -> result
    runs: dict = field(default_factory=dict)  # system -> run folder

    def timed(self, name: str):
        return _Timer(self, name)


class _Timer:
    def __init__(self, state: DemoState, name: str):
        self.state, self.phase = state, Phase(name)

    def __enter__(self) -> Phase:
        self.start, self.cpu = time.perf_counter(), time.process_time()
        return self.phase

    def __exit__(self, *exc) -> None:
        self.phase.seconds = time.perf_counter() - self.start
        self.phase.cpu_s = time.process_time() - self.cpu
        self.state.phases.append(self.phase)


def choose_precision() -> str:
    """bf16 autocast only where the hardware does bf16 natively (CUDA, AVX512-BF16 or AMX).

    On an AVX2-only CPU, PyTorch emulates bf16 matmuls: measured there, a SmolLM2 LoRA step was
    19x slower in bf16 than in fp32. fp32 is the honest fast choice there. The rule is the
    training loop's `precision: auto`.
    """
    import torch

    from tunelab.train.loop import resolve_precision

    return resolve_precision("auto", "cuda" if torch.cuda.is_available() else "cpu")


# --- the story ----------------------------------------------------------------------------

SYSTEMS = {
    "lora-sentiment": ("LoRA, sentiment only", "lora", False),
    "lora-mixture": ("LoRA, sentiment + QA mixture", "lora", True),
    "full-sentiment": ("full fine-tuning, sentiment only", "full", False),
}


def run_demo(seed: int = 0, output: str | Path = "runs", quick: bool = False, model: str = MODEL,
             full_finetune: bool = True, console=None) -> Path:
    """Run the whole demo; returns the demo folder (report.html is inside)."""
    from rich.console import Console

    from tunelab.models import resolve_model

    console = console or Console(highlight=False)
    plan = DemoPlan.quick() if quick else DemoPlan()
    plan.full_finetune = plan.full_finetune and full_finetune
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(output) / f"demo-seed{seed}-{stamp}"
    folder.mkdir(parents=True, exist_ok=False)
    state = DemoState(folder=folder, seed=seed, plan=plan, model=model)
    started = time.perf_counter()

    console.rule("[bold]tunelab demo")
    console.print(f"model {model}, seed {seed}, output {folder}" + (" (quick mode: numbers mean nothing)" if quick else ""))
    with state.timed("setup: resolve model") as phase:
        model_path = resolve_model(model)
        precision = choose_precision()
        phase.detail = f"{model_path}; training precision {precision}"
    console.print(f"training precision: {precision} (bf16 only where the hardware has it)")

    tasks = [sentiment_task(), qa_task()]
    eval_tasks = [eval_task(t, plan) for t in tasks]
    eval_kwargs = dict(limit=plan.eval_limit, batch_size=plan.eval_batch_size, n_resamples=plan.bootstrap,
                       seed=seed, cache=False)

    # 1. Before -------------------------------------------------------------------------------
    console.rule("[bold]1. Before fine-tuning: the base model")
    from tunelab.evaluate import evaluate, measure_forgetting

    with state.timed("1. evaluate the base model") as phase:
        base = evaluate(model, eval_tasks, output_dir=folder / "base", **eval_kwargs)
        phase.detail = _items(base)
    state.evaluations["base"] = base["tasks"]
    show_examples(console, folder / "base", "sentiment", 3)
    show_numbers(console, "base model", base["tasks"])

    # 2-4. Training runs and their forgetting reports -----------------------------------------
    order = ["lora-sentiment", "lora-mixture"] + (["full-sentiment"] if plan.full_finetune else [])
    headings = {"lora-sentiment": "2. Single-task LoRA fine-tuning on sentiment (and 3. forgetting on QA)",
                "lora-mixture": "4. Remedy: LoRA on a sentiment + QA mixture",
                "full-sentiment": "4b. Full fine-tuning on sentiment only, for comparison with LoRA"}
    from tunelab.train import train

    for name in order:
        label, method, mixture = SYSTEMS[name]
        console.rule(f"[bold]{headings[name]}")
        run_tasks = tasks if mixture else tasks[:1]
        cfg = run_config(name, folder, model, run_tasks, method, plan, seed)
        cfg.train.precision = precision
        with state.timed(f"train {name} ({plan.steps} steps)") as phase:
            run = train(cfg)
            summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
            phase.detail = f"{summary.get('steps')} steps, {summary.get('wall_s', 0):.0f}s"
        state.runs[name] = run
        with state.timed(f"evaluate {name}") as phase:
            report = measure_forgetting(model, str(run), eval_tasks, tuned_task="sentiment", output_dir=run / "forgetting",
                                base_results_dir=folder / "base", **eval_kwargs)
            tuned = json.loads((run / "forgetting" / "tuned" / "results.json").read_text(encoding="utf-8"))
            phase.detail = _items(tuned)
        state.evaluations[name] = {"tasks": tuned["tasks"], "forgetting": report, "summary": summary}
        if name == "lora-sentiment":
            show_examples(console, run / "forgetting" / "tuned", "sentiment", 3)
        show_numbers(console, label, tuned["tasks"])
        show_forgetting(console, report)

    # 5. Results, report, summary ---------------------------------------------------------------
    console.rule("[bold]5. Results")
    with state.timed("write results and reports"):
        results = collect_results(state, precision, time.perf_counter() - started)
        write_json(folder / "results.json", results)
        write_text(folder / "results.md", results_markdown(results))
        from tunelab.evaluate.compare import compare_runs
        from tunelab.report import write_report

        for run in state.runs.values():
            write_report(run)  # each run's own: loss curves, forgetting, predictions before vs after
        # The demo folder's report.html: every system side by side (compare.json), the trade-off
        # of gain on sentiment against the change on QA, and links to each run's report.
        compare_runs([str(folder)], output_dir=folder, tuned_task="sentiment", n_resamples=plan.bootstrap)
        html, _md = write_report(folder)
    results["phases"] = [asdict(p) for p in state.phases]
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(folder / "results.json", results)
    show_summary(console, results)
    show_phases(console, state.phases, results["wall_s"])
    console.print(f"results: {folder / 'results.json'} and {folder / 'results.md'}")
    console.print(f"report: {html}")
    return folder


# --- numbers and printing ----------------------------------------------------------------

def _items(results: dict) -> str:
    return ", ".join(f"{name} n={res['n']}" for name, res in results["tasks"].items())


def _metric(tasks: dict, task: str, metric: str) -> dict | None:
    entry = tasks.get(task, {}).get("metrics", {}).get(metric)
    return None if entry is None else {"value": entry["value"], "ci": entry.get("ci")}


def _pct(entry: dict | None) -> str:
    if entry is None:
        return "n/a"
    text = f"{100 * entry['value']:.1f}%"
    if entry.get("ci"):
        text += f" [{100 * entry['ci'][0]:.1f}, {100 * entry['ci'][1]:.1f}]"
    return text


def show_examples(console, eval_dir: Path, task: str, n: int) -> None:
    from tunelab.evaluate.harness import read_examples

    for row in read_examples(eval_dir, task)[:n]:
        review = row["prompt"].split("Text: ", 1)[-1].split("<|im_end|>", 1)[0].strip()
        got = (row.get("scores") or {}).get("predicted_label")
        console.print(f"  review: [italic]{review}[/]  (gold: {row['label']})")
        console.print(f"  model:  [bold]{row['prediction'].strip()!r}[/] -> label {got or 'UNMAPPED'}")


def show_numbers(console, label: str, tasks: dict) -> None:
    s = tasks["sentiment"]["metrics"]
    console.print(f"[bold]{label}[/] on sentiment (n={tasks['sentiment']['n']}): "
                  f"unmappable outputs {int(s['unmapped']['value'])}, accuracy {_pct(_metric(tasks, 'sentiment', 'accuracy'))}, "
                  f"macro-F1 {100 * s['macro_f1']['value']:.1f}%")
    console.print(f"[bold]{label}[/] on QA (n={tasks['qa']['n']}): token F1 {_pct(_metric(tasks, 'qa', 'token_f1'))}, "
                  f"exact match {_pct(_metric(tasks, 'qa', 'exact_match'))}")


def show_forgetting(console, report: dict) -> None:
    for row in report["tasks"]:
        word = "gain" if row["task"] == report["summary"]["tuned_task"] else "change"
        console.print(f"  {row['task']} {row['metric']} {word} vs base: {100 * row['diff']:+.1f} points "
                      f"(paired 95% CI [{100 * row['ci'][0]:+.1f}, {100 * row['ci'][1]:+.1f}], {p_clause(row['p_value'])})")


def collect_results(state: DemoState, precision: str, wall_s: float) -> dict:
    systems = {}
    for name, entry in state.evaluations.items():
        tasks = entry["tasks"] if name != "base" else entry
        system = {
            "label": "base model (no tuning)" if name == "base" else SYSTEMS[name][0],
            "sentiment": {m: _metric(tasks, "sentiment", m) for m in ("accuracy", "macro_f1", "unmapped")},
            "qa": {m: _metric(tasks, "qa", m) for m in ("token_f1", "exact_match")},
            "n": {t: tasks[t]["n"] for t in tasks},
        }
        if name != "base":
            summary = entry["summary"]
            system["run"] = str(state.runs[name])
            system["cost"] = {k: summary.get(k) for k in ("method", "steps", "wall_s", "train_tokens",
                                                            "trainable_params", "total_params", "peak_rss_mb")}
            system["vs_base"] = {row["task"]: {k: row[k] for k in ("metric", "n", "diff", "ci", "p_value")}
                                 for row in entry["forgetting"]["tasks"]}
        systems[name] = system
    return {"seed": state.seed, "model": state.model, "precision": precision, "plan": asdict(state.plan),
            "folder": str(state.folder), "systems": systems, "wall_s": round(wall_s, 1)}


def results_markdown(results: dict) -> str:
    lines = [f"# tunelab demo (seed {results['seed']})", "",
             "| system | sentiment accuracy [95% CI] | macro-F1 | unmappable | QA token F1 [95% CI] | "
             "QA token F1 change vs base [paired 95% CI] (p) | train s |", "|---|---|---|---|---|---|---|"]
    for row in summary_rows(results):
        lines.append("| " + " | ".join(row) + " |")
    reading = qa_cost_reading(results)
    return "\n".join(lines + ([""] + [reading] if reading else [])) + "\n"


def summary_rows(results: dict) -> list[list[str]]:
    rows = []
    for name, s in results["systems"].items():
        change = "-"
        if "vs_base" in s:
            d = s["vs_base"]["qa"]
            change = f"{100 * d['diff']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}] ({p_clause(d['p_value'])})"
        unmapped = s["sentiment"]["unmapped"]
        rows.append([s["label"], _pct(s["sentiment"]["accuracy"]), f"{100 * s['sentiment']['macro_f1']['value']:.1f}%",
                     f"{int(unmapped['value'])}/{s['n']['sentiment']}", _pct(s["qa"]["token_f1"]), change,
                     f"{s['cost']['wall_s']:.0f}" if "cost" in s else "-"])
    return rows


def qa_cost_reading(results: dict) -> str:
    """One sentence on the held-out cost: which sentiment-only systems lost QA token F1 (paired CI
    below zero), or that none did. The mixture trained on other QA questions: not a forgetting measure."""
    lost, kept = [], []
    for name, s in results["systems"].items():
        if "vs_base" not in s or SYSTEMS[name][2]:
            continue
        d = s["vs_base"]["qa"]
        (lost if d["ci"][1] < 0 else kept).append(
            f"{s['label']} {100 * d['diff']:+.1f} points [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]")
    if not lost and not kept:
        return ""
    if lost:
        return "cost on held-out QA: " + "; ".join(lost) + " (paired CI below zero)" + \
            (f"; no detectable change for {'; '.join(kept)}" if kept else "")
    return ("cost on held-out QA: none detectable at these settings: every sentiment-only system's QA token F1 "
            "change has a paired 95% CI that includes zero (" + "; ".join(kept) + ")")


def show_summary(console, results: dict) -> None:
    from rich.table import Table

    table = Table(title=f"tunelab demo, seed {results['seed']}: what tuning gained and what it cost")
    for col in ("system", "sentiment accuracy [95% CI]", "macro-F1", "unmappable", "QA token F1 [95% CI]",
                "QA token F1 change [paired CI] (p)", "train s"):
        table.add_column(col)
    for row in summary_rows(results):
        table.add_row(*row)
    console.print(table)
    reading = qa_cost_reading(results)
    if reading:
        console.print(reading)


def show_phases(console, phases: list[Phase], wall_s: float) -> None:
    from rich.table import Table

    table = Table(title=f"phase timings (total {wall_s / 60:.1f} min)")
    table.add_column("phase")
    table.add_column("wall s", justify="right")
    table.add_column("CPU s", justify="right")
    table.add_column("detail")
    for p in phases:
        table.add_row(p.name, f"{p.seconds:.0f}", f"{p.cpu_s:.0f}", p.detail)
    console.print(table)
