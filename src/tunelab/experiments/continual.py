"""Continual fine-tuning: the config's `stages:` trained one after another.

    <output_dir>/<name>/
      config.resolved.yaml
      stages/01-<stage>/ ...        an ordinary run folder per stage (tunelab.train)
      scores/stage-00/ ...          every task scored after every stage (row 0 = base model): an
                                    evaluation folder each (results.json, per-example files, loss/)
      matrix.json  matrix.md  matrix.png   R[stage][task], ACC / BWT / FWT (matrix.py)

Stage i starts from stage i-1's weights: the full model folder for `full` / `freeze`, or, for
PEFT methods, the base with stage i-1's adapter merged in (a fresh adapter is trained on top;
the sum of the stage adapters is the total change). Each stage trains the mixture of its
`tasks` (data.mixture applies) plus, optionally, a replay sample of earlier stages' tasks:
replayed examples join the stage's mixture as their own task, so with `concat` each is seen
once per epoch. Earlier tasks' validation splits stay in the stage's data, so the run's
metrics.jsonl logs `val_loss/<task>` for every task while it trains: forgetting as it happens.

Every cell is scored by the evaluation engine (tunelab.evaluate.evaluate), so a cell's number is
the number `tunelab eval` gives for that stage's model, task and split: the score is the task's
primary metric (tunelab.config.scoring), the loss its answer-token NLL (eval_kind perplexity).
Rerunning with resume=True skips stages whose run finished (summary.json status "completed")
and scores that exist.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from tunelab.config import ConfigError, write_resolved
from tunelab.experiments.matrix import build_matrix, format_matrix, learned_at_from_stages
from tunelab.experiments.replay import sample_replay
from tunelab.files import write_json, write_text
from tunelab.runfolder import read_json


def root_dir(cfg) -> Path:
    out = Path(cfg.output_dir)
    if not out.is_absolute():
        out = Path(cfg.config_dir) / out
    return out / cfg.name


def stage_label(i: int, stage) -> str:
    return f"{i:02d}-{stage.name or '+'.join(stage.tasks)}"


def check_stages(cfg) -> list[str]:
    """Validate task names before any work; return the tasks scored after every stage."""
    known = [t.name for t in cfg.data.tasks]
    cont = cfg.continual
    for i, stage in enumerate(cfg.stages):
        for task in stage.tasks:
            if task not in known:
                raise ConfigError(f"stages.{i}.tasks: unknown task '{task}' (data.tasks has: {', '.join(known)})")
    extra = cont.eval_tasks if cont else []
    for task in extra:
        if task not in known:
            raise ConfigError(f"continual.eval_tasks: unknown task '{task}' (data.tasks has: {', '.join(known)})")
    if not extra:
        return known  # every task in data.tasks is a matrix column
    trained = [t for stage in cfg.stages for t in stage.tasks]
    return [t for t in known if t in trained or t in extra]


def stage_config(cfg, i: int, stage, model_name: str):
    """The experiment config of one stage: overrides applied, its own run folder, no stages."""
    from tunelab.config.schema import ExperimentConfig
    from tunelab.experiments.search import set_dotted

    raw = json.loads(cfg.model_dump_json())
    for key in ("stages", "continual", "search"):
        raw.pop(key, None)
    for key, value in stage.overrides.items():
        set_dotted(raw, key, value)
    raw["model"]["name"] = model_name
    raw["name"] = stage_label(i, stage)
    raw["output_dir"] = str(root_dir(cfg) / "stages")
    try:
        new = ExperimentConfig.model_validate(raw)
    except Exception as err:
        raise ConfigError(f"stages.{i - 1}.overrides: {err}") from None
    new.config_dir = cfg.config_dir
    return new


def stage_data(cfg, data, i: int, stage, replay_cfg):
    """PreparedData for one stage: its tasks, replayed earlier tasks, earlier validation splits."""
    from tunelab.data import PreparedData, TaskData, build_report
    from tunelab.data.errors import DataError
    from tunelab.data.mixture import mixture_rates

    earlier = []
    for prev in cfg.stages[: i - 1]:
        earlier += [t for t in prev.tasks if t not in stage.tasks and t not in earlier]
    replayed = {}
    if replay_cfg and earlier:
        seed = replay_cfg.seed if replay_cfg.seed is not None else cfg.seed
        pools = {t: data.tasks[t].splits["train"] for t in earlier}
        replayed = sample_replay(pools, replay_cfg.fraction, replay_cfg.count, seed)
    tasks = {t: data.tasks[t] for t in stage.tasks}
    for t in earlier:
        old = data.tasks[t]
        splits = {"train": replayed.get(t, []), "validation": old.splits.get("validation", []), "test": []}
        tasks[t] = TaskData(old.name, old.kind, splits, old.labels, counts={"replayed": len(replayed.get(t, []))})
    mix = cfg.data.mixture
    weights = dict(mix.weights or {})
    for task_cfg in cfg.data.tasks:
        if task_cfg.weight is not None:
            weights.setdefault(task_cfg.name, task_cfg.weight)
    sizes = {name: len(t.splits["train"]) for name, t in tasks.items()}
    if mix.strategy == "weights":  # empty earlier tasks need no weight
        weights.update({name: 0.0 for name, n in sizes.items() if n == 0 and name not in weights})
    try:
        rates = mixture_rates(sizes, mix.strategy, mix.cap, mix.temperature, weights)
    except ValueError as exc:
        raise DataError(f"stage {i} mixture: {exc}") from None
    prepared = PreparedData(tasks=tasks, mixture_rates=rates, mixture=mix, seed=data.seed)
    prepared.report = build_report(prepared)
    prepared.report["replay"] = {t: len(v) for t, v in replayed.items()}
    return prepared


def score_cell(root: Path, cfg, row: int, model_spec, tasks: list[str]) -> dict:
    """R[row][task] for every task: the engine's primary metric and answer loss, one folder per row."""
    from tunelab.config.evaluate import GenerationConfig
    from tunelab.evaluate.harness import evaluate, training_data

    cont = cfg.continual
    folder = root / "scores" / f"stage-{row:02d}"
    kwargs = dict(split=cont.eval_split, limit=cont.eval_limit, batch_size=cont.eval_batch_size,
                  n_resamples=cont.bootstrap_resamples, config_dir=cfg.config_dir, spec=model_spec,
                  allow_train_overlap=cont.allow_train_overlap, verbose=False, **training_data(cfg))
    out = {t: {"n": 0} for t in tasks}
    if "generate" in cont.metrics:
        generation = GenerationConfig(max_new_tokens=cont.max_new_tokens) if cont.max_new_tokens else None
        done = read_json(folder / "results.json") or evaluate(None, tasks, output_dir=folder, generation=generation,
                                                           **kwargs)
        for t in tasks:
            res = done["tasks"][t]
            out[t].update(score=res["metrics"][res["primary_metric"]]["value"], metric=res["primary_metric"],
                          n=res["n"])
    if "loss" in cont.metrics:
        loss_tasks = [{"name": t, "eval_kind": "perplexity", "metrics": ["token_nll"]} for t in tasks]
        done = read_json(folder / "loss" / "results.json") or evaluate(None, loss_tasks, output_dir=folder / "loss",
                                                                    **kwargs)
        for t in tasks:
            out[t].update(loss=done["tasks"][t]["metrics"]["token_nll"]["value"], n=done["tasks"][t]["n"])
            out[t].setdefault("metric", "token_nll")
    return out


def check_overlap(cfg, data, tasks: list[str]) -> None:
    """Before any training: no scored example may be an input some stage trains on (the matrix would
    score memorisation), unless continual.allow_train_overlap."""
    from tunelab.evaluate.provenance import refuse_overlap

    if cfg.continual.allow_train_overlap:
        return
    trained = {ex.content_key: name for stage in cfg.stages for name in stage.tasks
               for ex in data.tasks[name].splits["train"]}
    split, limit = cfg.continual.eval_split, cfg.continual.eval_limit
    for name in tasks:
        examples = list(data.tasks[name].splits.get(split) or [])[:limit]
        hits = [ex for ex in examples if ex.content_key in trained]
        if hits:
            report = {"overlap": len(hits), "n": len(examples), "examples": [ex.source for ex in hits[:2]],
                      "runs": sorted({f"task '{trained[ex.content_key]}' (training split)" for ex in hits})}
            refuse_overlap(name, split, report, "set continual.allow_train_overlap: true")


def merge_adapter(base_name: str, run: Path, model_cfg, method: str | None = None) -> Path:
    """Merge a stage's PEFT adapter into its base and save the full model for the next stage.
    `method`: the stage's train.method (None: read from the adapter); one whose adapter cannot be
    merged (prompt or prefix tuning) is refused."""
    from tunelab.models.load import load_model
    from tunelab.models.tuners import merge_into_base

    target = run / "merged"
    if (target / "config.json").exists():
        return target
    model, tokenizer = load_model(model_cfg.model_copy(update={"name": base_name, "dtype": "float32"}),
                                  adapter=str(run / "final"))
    merged = merge_into_base(model, method)
    tmp = run / ".tmp-merged"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.replace(target)
    return target


def stage_report(run: Path):
    """A stage's report.html and report.md, for its trackers (train.report_to)."""
    from tunelab.report import write_report

    return write_report(run)


def stage_finished(run: Path) -> bool:
    summary = run / "summary.json"
    return summary.exists() and json.loads(summary.read_text()).get("status") in ("completed", "early_stopped")


def run_continual(cfg, resume: bool = False, train_fn=None, log=print) -> Path:
    """Train every stage in order, score every task after each; returns the experiment folder."""
    from tunelab.config.experiments import ContinualConfig
    from tunelab.data import prepare
    from tunelab.evaluate.loading import ModelSpec, load_options
    from tunelab.models.load import load_tokenizer
    from tunelab.models.resolver import resolve_model
    from tunelab.models.tuners import get_method
    from tunelab.train import train

    import torch
    from accelerate import PartialState

    if not cfg.stages:
        raise ConfigError("the config has no 'stages:' list; use tunelab train for a single run")
    train_fn = train_fn or functools.partial(train, report=stage_report)  # trackers get each stage's report
    cfg.continual = cfg.continual or ContinualConfig()
    cont = cfg.continual
    tasks = check_stages(cfg)
    root = root_dir(cfg)
    # Under `accelerate launch` every process runs this: all train each stage together (DDP); the
    # main process alone scores, merges and writes, the others wait for it.
    procs = PartialState(cpu=not torch.cuda.is_available())  # as the training loop's Accelerator
    if root.exists() and any(root.iterdir()) and not resume:
        raise ConfigError(f"{root} already holds an experiment; pass --resume to continue it, or choose "
                          f"another name (name=... on the command line)")
    procs.wait_for_everyone()
    if procs.is_main_process:
        (root / "scores").mkdir(parents=True, exist_ok=True)
        write_resolved(cfg, root)
    data = prepare(cfg, load_tokenizer(resolve_model(cfg.model.name), cfg.model))
    check_overlap(cfg, data, tasks)
    log(f"[continual] scoring the base model on {len(tasks)} task(s)")
    options = load_options(cfg.model)
    rows = [main_only(procs, score_cell, root, cfg, 0, ModelSpec(cfg.model.name, dtype=cont.eval_dtype,
                                                                  label="base", options=options), tasks)]
    names = ["base"]
    model_name = cfg.model.name
    for i, stage in enumerate(cfg.stages, start=1):
        replay_cfg = cont.replay if stage.replay is None else (stage.replay or None)
        if i == 1:
            replay_cfg = None
        scfg = stage_config(cfg, i, stage, model_name)
        run = root / "stages" / scfg.name
        names.append(scfg.name)
        if resume and stage_finished(run) and (run / "final").exists():
            log(f"[continual] stage {i}/{len(cfg.stages)} {scfg.name}: already trained, skipped")
        else:
            sdata = stage_data(cfg, data, i, stage, replay_cfg)
            log(f"[continual] stage {i}/{len(cfg.stages)} {scfg.name}: tasks {stage.tasks}, "
                f"replay {sdata.report['replay'] or 'none'}, starting from {model_name}")
            run = Path(train_fn(scfg, resume=resume and run.exists(), data=sdata))
        if not cont.keep_checkpoints and procs.is_main_process:
            shutil.rmtree(run / "checkpoints", ignore_errors=True)
        peft = get_method(scfg.train.method).peft
        final = str(run / "final")
        # full / freeze: the stage's own weights are the model to score and continue from
        spec = ModelSpec(model_name, adapter=final, dtype=cont.eval_dtype, label=scfg.name, run=str(run),
                         options=options) if peft else \
            ModelSpec(final, full_model=final, dtype=cont.eval_dtype, label=scfg.name, run=str(run), options=options)
        rows.append(main_only(procs, score_cell, root, cfg, i, spec, tasks))
        if not peft:
            model_name = final
        elif i < len(cfg.stages):
            main_only(procs, merge_adapter, model_name, run, cfg.model, scfg.train.method)
            model_name = str(run / "merged")
    return main_only(procs, write_matrices, root, cfg, tasks, names, rows, log) or root


def main_only(procs, fn, *args):
    """fn(*args) on the main process; every process waits for it. Returns fn's result on the main one."""
    result = fn(*args) if procs.is_main_process else None
    procs.wait_for_everyone()
    return result


def write_matrices(root: Path, cfg, tasks: list[str], names: list[str], rows: list[dict], log=print) -> Path:
    learned = learned_at_from_stages([s.tasks for s in cfg.stages])
    out = {"tasks": tasks, "stages": names, "learned_at": learned, "matrices": {}}
    text = []
    for key, higher, label in (("score", True, "score"), ("loss", False, "loss")):
        if not all(key in r.get(t, {}) for r in rows for t in tasks):
            continue
        values = [[float(r[t][key]) for t in tasks] for r in rows]
        metric = label if key == "loss" else "score (" + ", ".join(f"{t}: {rows[0][t]['metric']}" for t in tasks) + ")"
        matrix = build_matrix(values, tasks, names, learned, metric=metric, higher_is_better=higher)
        out["matrices"][key] = matrix.to_dict()
        text.append(format_matrix(matrix))
    from tunelab.experiments.continual_tests import backward_tests

    for key in out["matrices"]:  # what the later stages cost each earlier task, as paired tests
        out["matrices"][key]["backward_tests"] = backward_tests([root], tasks, learned, len(names) - 1, key,
                                                                cfg.continual.bootstrap_resamples)
    write_json(root / "matrix.json", out)
    write_text(root / "matrix.md", "```\n" + "\n\n".join(text) + "\n```\n")
    plot_matrices(out, root / "matrix.png")
    log("\n\n".join(text))
    return root


def plot_matrices(out: dict, path: Path) -> Path | None:
    if not out["matrices"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mats = list(out["matrices"].items())
    fig, axes = plt.subplots(1, len(mats), figsize=(2.2 + 1.3 * len(out["tasks"]) * len(mats),
                                                    1.2 + 0.55 * len(out["stages"])), squeeze=False)
    for ax, (key, m) in zip(axes[0], mats):
        values = m["scores"]
        im = ax.imshow(values, cmap="viridis" if m["higher_is_better"] else "viridis_r", aspect="auto")
        ax.set_xticks(range(len(m["tasks"])), m["tasks"], rotation=30, ha="right")
        ax.set_yticks(range(len(m["stages"])), m["stages"])
        for r, row in enumerate(values):
            for c, v in enumerate(row):
                light = im.norm(v) > 0.5 if m["higher_is_better"] else im.norm(v) < 0.5  # viridis is bright there
                ax.text(c, r, f"{v:.3f}", ha="center", va="center", color="black" if light else "white", fontsize=8)
        s = m["summary"]
        fmt = lambda v: "n/a" if v is None else f"{v:+.3f}"  # noqa: E731
        ax.set_title(f"R[stage][task]: {key}\nACC {fmt(s['ACC'])}  BWT {fmt(s['BWT'])}  FWT {fmt(s['FWT'])}",
                     fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
