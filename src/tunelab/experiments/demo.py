"""`tunelab demo`: the seed's whole story on the embedded SmolLM2-135M-Instruct, offline.

  1. before   the base model answers a sentiment question with sentences (label extraction
              counts the outputs it cannot map), and answers short factual questions;
  2. tune     LoRA on sentiment only: it answers with labels, accuracy and F1 rise;
  3. forget   the factual QA measured before and after: whatever happens is reported;
  4. remedy   a LoRA run on a sentiment + QA mixture, and full fine-tuning on sentiment only,
              in one forgetting table with paired CIs (exact McNemar for accuracy);
  5. second   each sentiment model (LoRA, full) then trained on QA only, as users add a task:
              its sentiment accuracy paired with the first stage's on the same reviews
              (whatever it shows is printed; docs/experiments.md has the measurements);
  6. report   results.json, compare.json, report.html (every system side by side: metric bars,
              the gain-vs-forgetting plot, per-task tables, costs, links to each run's report)
              and a summary table; the report's path is printed last.

`--seeds N` trains every system (both stages) once per training seed, seed, seed + 1, ...
(the first is the plain demo's): <demo>/<system>/seed-<s>/ with <demo>/<system>/seeds.json
(experiments/seeds.py). The split, the base model's scores and the test examples stay those of
`--seed`; compare.json pairs each system over its seeds with the base model (seed and example
variance in one test), and the readings say whether each comparison holds in every seed.

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

from tunelab.experiments.demo_results import (items, metric, paired, show_examples, show_forgetting, show_numbers,
                                              show_phases, show_summary, write_results)
from tunelab.files import write_json

DATA_DIR = Path(__file__).resolve().parent / "demo_data"
MODEL = "smollm2-135m-instruct"
LABELS = ["negative", "positive"]


@dataclass
class DemoPlan:
    """What the demo runs. The defaults are the real demo; `quick()` is for tests."""

    steps: int = 50  # optimizer steps per first-stage run (sentiment, the mixture)
    second_steps: int = 40  # a second stage on QA: 40 training questions, 8 epochs of batch 8
    batch_size: int = 8
    lora_lr: float = 3e-4
    # 1e-4, a common choice for a model this small: in the two-stage experiment of
    # docs/experiments.md full fine-tuning forgot nothing of stage 1 at 3e-5 and 10 points at 1e-4.
    full_lr: float = 1e-4
    full_finetune: bool = True  # the "full vs LoRA" comparison (the slowest run)
    eval_limit: int | None = None  # None: the whole test split of each task
    sentiment_new_tokens: int = 20  # enough for the base model's first sentence
    qa_new_tokens: int = 16
    eval_batch_size: int = 16
    bootstrap: int = 1000

    @classmethod
    def quick(cls) -> DemoPlan:
        return cls(steps=2, second_steps=2, batch_size=4, eval_limit=6, sentiment_new_tokens=4, qa_new_tokens=4,
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

def run_config(name: str, out: Path, model: str, tasks: list[dict], method: str, plan: DemoPlan, seed: int,
               steps: int, train_seed: int | None = None):
    """train_seed: the training seed (initialisation, data order) when not `seed`, which also splits."""
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
            "max_steps": steps,
            "batch_size": plan.batch_size,
            "precision": "bf16",
            "scheduler": "linear",
            "warmup_steps": max(1, steps // 10),
            "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"},
            "checkpoint_every": None,
            "keep_last": 1,
            "seed": train_seed,
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
    precision: str = "fp32"  # training precision: choose_precision() at setup
    train_seeds: list[int] = field(default_factory=list)  # one, `seed`, unless --seeds N
    train_seed: int = 0  # the training seed of the runs now being trained
    phases: list[Phase] = field(default_factory=list)
    evaluations: dict = field(default_factory=dict)  # system -> task -> result (this training seed's)
    runs: dict = field(default_factory=dict)  # system -> run folder (this training seed's)
    by_seed: dict = field(default_factory=dict)  # training seed -> its systems (system_entries)
    all_runs: list[Path] = field(default_factory=list)  # every run folder, every seed

    @property
    def several(self) -> bool:
        return len(self.train_seeds) > 1

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

@dataclass(frozen=True)
class System:
    """One fine-tuned system of the demo: what it trains, how, and the system it continues from."""

    label: str
    method: str
    trained_on: tuple[str, ...]
    after: str | None = None  # a second stage: starts from this system's model


SYSTEMS = {
    "lora-sentiment": System("LoRA, sentiment only", "lora", ("sentiment",)),
    "lora-mixture": System("LoRA, sentiment + QA mixture", "lora", ("sentiment", "qa")),
    "full-sentiment": System("full fine-tuning, sentiment only", "full", ("sentiment",)),
    "lora-then-qa": System("LoRA, sentiment then QA", "lora", ("qa",), after="lora-sentiment"),
    "full-then-qa": System("full fine-tuning, sentiment then QA", "full", ("qa",), after="full-sentiment"),
}
HEADINGS = {"lora-sentiment": "2. Single-task LoRA fine-tuning on sentiment (and 3. forgetting on QA)",
            "lora-mixture": "4. Remedy: LoRA on a sentiment + QA mixture",
            "full-sentiment": "4b. Full fine-tuning on sentiment only, for comparison with LoRA",
            "lora-then-qa": "5. A second task: the sentiment LoRA model, then LoRA on QA only",
            "full-then-qa": "5b. A second task: the fully fine-tuned sentiment model, then full fine-tuning on QA only"}


def run_demo(seed: int = 0, output: str | Path = "runs", quick: bool = False, model: str = MODEL,
             full_finetune: bool = True, console=None, seeds: int = 1) -> Path:
    """Run the whole demo; returns the demo folder (report.html is inside). seeds: how many
    training seeds (seed, seed + 1, ...) every system is trained with."""
    from rich.console import Console

    from tunelab.config import UserError
    from tunelab.evaluate import evaluate
    from tunelab.models import resolve_model

    if seeds < 1:
        raise UserError(f"--seeds {seeds}: train with at least one seed")
    console = console or Console(highlight=False)
    plan = DemoPlan.quick() if quick else DemoPlan()
    plan.full_finetune = plan.full_finetune and full_finetune
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(output) / f"demo-seed{seed}-{stamp}"
    folder.mkdir(parents=True, exist_ok=False)
    state = DemoState(folder=folder, seed=seed, plan=plan, model=model, train_seeds=[seed + k for k in range(seeds)])
    started = time.perf_counter()

    console.rule("[bold]tunelab demo")
    console.print(f"model {model}, seed {seed}, output {folder}" + (" (quick mode: numbers mean nothing)" if quick else ""))
    if state.several:
        console.print(f"training seeds {', '.join(map(str, state.train_seeds))}: every system trained once per seed")
    with state.timed("setup: resolve model") as phase:
        model_path = resolve_model(model)
        state.precision = choose_precision()
        phase.detail = f"{model_path}; training precision {state.precision}"
    console.print(f"training precision: {state.precision} (bf16 only where the hardware has it)")

    console.rule("[bold]1. Before fine-tuning: the base model")
    with state.timed("1. evaluate the base model") as phase:
        base = evaluate(model, eval_tasks(plan), output_dir=folder / "base", **eval_kwargs(state))
        phase.detail = items(base)
    show_examples(console, folder / "base", "sentiment", 3)
    show_numbers(console, "base model", base["tasks"])

    order = ["lora-sentiment", "lora-mixture"] + (["full-sentiment"] if plan.full_finetune else []) + \
        ["lora-then-qa"] + (["full-then-qa"] if plan.full_finetune else [])
    for k, train_seed in enumerate(state.train_seeds):
        state.train_seed, state.runs, state.evaluations = train_seed, {}, {"base": base["tasks"]}
        if k:
            console.rule(f"[bold]Training seed {train_seed} ({k + 1} of {seeds}): the same systems again")
        for name in order:
            if not k:
                console.rule(f"[bold]{HEADINGS[name]}")
            train_and_measure(state, name, console)
        state.by_seed[train_seed] = system_entries(state)

    console.rule("[bold]6. Results")
    with state.timed("write results and reports"):
        results, html = write_results(state, time.perf_counter() - started)
    results["phases"] = [asdict(p) for p in state.phases]
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(folder / "results.json", results)
    show_summary(console, results)
    show_phases(console, state.phases, results["wall_s"])
    # soft_wrap: a path is one line however long, so that it can be copied (rich folds it at 80
    # columns when stdout is not a terminal)
    console.print(f"results: {folder / 'results.json'} and {folder / 'results.md'}", soft_wrap=True)
    console.print(f"report: {html}", soft_wrap=True)
    return folder


def eval_tasks(plan: DemoPlan) -> list[dict]:
    return [eval_task(t, plan) for t in (sentiment_task(), qa_task())]


def eval_kwargs(state: DemoState) -> dict:
    plan = state.plan
    return dict(limit=plan.eval_limit, batch_size=plan.eval_batch_size, n_resamples=plan.bootstrap, seed=state.seed,
                cache=False)


def train_and_measure(state: DemoState, name: str, console) -> None:
    """Train one system, score it on both tasks, and pair it with the base model (and, for a second
    stage, with the model it continued from): the forgetting reports of tunelab.evaluate."""
    from tunelab.evaluate import measure_forgetting
    from tunelab.evaluate.forgetting import write_forgetting
    from tunelab.train import train

    system, plan, folder = SYSTEMS[name], state.plan, state.folder
    start = starting_model(state, system)
    tasks = [{"sentiment": sentiment_task(), "qa": qa_task()}[t] for t in system.trained_on]
    steps = plan.second_steps if system.after else plan.steps
    # One seed: <demo>/<system>/; several: <demo>/<system>/seed-<s>/ (a seeds folder per system).
    run_name, parent, which = (f"seed-{state.train_seed}", folder / name, f", seed {state.train_seed}") \
        if state.several else (name, folder, "")
    cfg = run_config(run_name, parent, start, tasks, system.method, plan, state.seed, steps, state.train_seed)
    cfg.train.precision = state.precision
    with state.timed(f"train {name} ({steps} steps{which})") as phase:
        run = train(cfg)
        summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        phase.detail = f"{summary.get('steps')} steps, {summary.get('wall_s', 0):.0f}s"
    state.runs[name] = run
    state.all_runs.append(run)
    with state.timed(f"evaluate {name}{which}") as phase:
        report = measure_forgetting(start, str(run), eval_tasks(plan), tuned_task="sentiment",
                                    output_dir=run / "forgetting", base_results_dir=folder / "base",
                                    **eval_kwargs(state))
        tuned = json.loads((run / "forgetting" / "tuned" / "results.json").read_text(encoding="utf-8"))
        phase.detail = items(tuned)
    entry = {"tasks": tuned["tasks"], "forgetting": report, "summary": summary}
    if name == "lora-sentiment" and state.train_seed == state.train_seeds[0]:
        show_examples(console, run / "forgetting" / "tuned", "sentiment", 3)
    show_numbers(console, system.label + which, tuned["tasks"])
    show_forgetting(console, report)
    if system.after:  # the same examples, scored after the first stage and after the second
        first = state.runs[system.after] / "forgetting" / "tuned"
        before = json.loads((first / "results.json").read_text(encoding="utf-8"))
        entry["vs_previous"] = write_forgetting(before, tuned, first, run / "forgetting" / "tuned",
                                                run / "forgetting-vs-first-stage", tuned_task="qa",
                                                n_resamples=plan.bootstrap, base_label=str(state.runs[system.after]),
                                                tuned_label=str(run))
        show_forgetting(console, entry["vs_previous"], against=SYSTEMS[system.after].label)
    state.evaluations[name] = entry


def starting_model(state: DemoState, system: System) -> str:
    """The model a run starts from: the base model, or the first stage's (a full run's own weights;
    a LoRA run's adapter merged into the base, with a fresh adapter trained on top, as `stages:` does)."""
    if system.after is None:
        return state.model
    first = state.runs[system.after]
    if SYSTEMS[system.after].method == "full":
        return str(first / "final")
    from tunelab.config.model import ModelConfig
    from tunelab.experiments.continual import merge_adapter

    return str(merge_adapter(state.model, first, ModelConfig(name=state.model)))


def system_entries(state: DemoState) -> dict:
    """This training seed's systems: metrics with CIs, paired changes, costs."""
    systems = {}
    for name, entry in state.evaluations.items():
        tasks = entry["tasks"] if name != "base" else entry
        system = {
            "label": "base model (no tuning)" if name == "base" else SYSTEMS[name].label,
            "trained_on": [] if name == "base" else list(SYSTEMS[name].trained_on),
            "sentiment": {m: metric(tasks, "sentiment", m) for m in ("accuracy", "macro_f1", "unmapped")},
            "qa": {m: metric(tasks, "qa", m) for m in ("token_f1", "exact_match")},
            "n": {t: tasks[t]["n"] for t in tasks},
        }
        if name != "base":
            summary = entry["summary"]
            system["run"] = str(state.runs[name])
            system["cost"] = {k: summary.get(k) for k in ("method", "steps", "wall_s", "train_tokens",
                                                            "trainable_params", "total_params", "peak_rss_mb")}
            system["vs_base"] = paired(entry["forgetting"])
        if "vs_previous" in entry:
            system["after"], system["after_label"] = SYSTEMS[name].after, SYSTEMS[SYSTEMS[name].after].label
            system["vs_previous"] = paired(entry["vs_previous"])
        systems[name] = system
    return systems
