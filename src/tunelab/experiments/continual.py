"""Continual fine-tuning: the config's `stages:` trained one after another.

    <output_dir>/<name>/
      config.resolved.yaml
      stages/01-<stage>/ ...        an ordinary run folder per stage (tunelab.train)
      scores/stage-00.json ...      every task scored after every stage (row 0 = base model)
      matrix.json  matrix.md  matrix.png   R[stage][task], ACC / BWT / FWT (matrix.py)

Stage i starts from stage i-1's weights: the full model folder for `full` / `freeze`, or, for
PEFT methods, the base with stage i-1's adapter merged in (a fresh adapter is trained on top;
the sum of the stage adapters is the total change). Each stage trains the mixture of its
`tasks` (data.mixture applies) plus, optionally, a replay sample of earlier stages' tasks:
replayed examples join the stage's mixture as their own task, so with `concat` each is seen
once per epoch. Earlier tasks' validation splits stay in the stage's data, so the run's
metrics.jsonl logs `val_loss/<task>` for every task while it trains: forgetting as it happens.

Rerunning with resume=True skips stages whose run finished (summary.json status "completed")
and scores that exist.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tunelab.config import ConfigError, write_resolved
from tunelab.experiments.matrix import build_matrix, format_matrix, learned_at_from_stages
from tunelab.experiments.replay import sample_replay

PEFT_METHODS = ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "qlora")


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


def eval_sets(cfg, data, tasks: list[str]) -> dict:
    cont = cfg.continual
    split = cont.eval_split if cont else "test"
    limit = cont.eval_limit if cont else None
    out = {}
    for name in tasks:
        task = data.tasks[name]
        examples = list(task.splits.get(split) or task.splits.get("validation") or [])[:limit]
        if not examples:
            raise ConfigError(f"task '{name}' has no {split} (or validation) examples to score after each stage")
        out[name] = (task.kind, task.labels, examples)
    return out


def merge_adapter(base_name: str, run: Path, model_cfg) -> Path:
    """Merge a stage's PEFT adapter into its base and save the full model for the next stage."""
    from tunelab.models.load import load_model

    target = run / "merged"
    if (target / "config.json").exists():
        return target
    model, tokenizer = load_model(model_cfg.model_copy(update={"name": base_name, "dtype": "float32"}),
                                  adapter=str(run / "final"))
    merged = model.merge_and_unload()
    tmp = run / ".tmp-merged"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.replace(target)
    return target


def stage_finished(run: Path) -> bool:
    summary = run / "summary.json"
    return summary.exists() and json.loads(summary.read_text()).get("status") in ("completed", "early_stopped")


def run_continual(cfg, resume: bool = False, train_fn=None, score_fn=None, log=print) -> Path:
    """Train every stage in order, score every task after each; returns the experiment folder."""
    from tunelab.config.experiments import ContinualConfig
    from tunelab.data import prepare
    from tunelab.experiments.scoring import score_model
    from tunelab.models.load import load_tokenizer
    from tunelab.models.resolver import resolve_model
    from tunelab.train import train

    if not cfg.stages:
        raise ConfigError("the config has no 'stages:' list; use tunelab train for a single run")
    train_fn = train_fn or train
    score_fn = score_fn or score_model
    cont = cfg.continual or ContinualConfig()
    tasks = check_stages(cfg)
    root = root_dir(cfg)
    if root.exists() and any(root.iterdir()) and not resume:
        raise ConfigError(f"{root} already holds an experiment; pass --resume to continue it, or choose "
                          f"another name (name=... on the command line)")
    (root / "scores").mkdir(parents=True, exist_ok=True)
    write_resolved(cfg, root)
    tokenizer = load_tokenizer(resolve_model(cfg.model.name), cfg.model)
    data = prepare(cfg, tokenizer)
    sets = eval_sets(cfg, data, tasks)
    precision = cfg.train.precision

    def scores_for(row: int, model_name: str, adapter: str | None) -> dict:
        path = root / "scores" / f"stage-{row:02d}.json"
        if path.exists():
            return json.loads(path.read_text())
        result = score_fn(model_name, sets, adapter=adapter, metrics=tuple(cont.metrics),
                          batch_size=cont.eval_batch_size, max_new_tokens=cont.max_new_tokens,
                          precision=precision, model_cfg=cfg.model)
        path.write_text(json.dumps(result, indent=2))
        return result

    log(f"[continual] scoring the base model on {len(tasks)} task(s)")
    rows = [scores_for(0, cfg.model.name, None)]
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
        if not cont.keep_checkpoints:
            shutil.rmtree(run / "checkpoints", ignore_errors=True)
        adapter = str(run / "final") if scfg.train.method in PEFT_METHODS else None
        if adapter is None:  # full / freeze: the stage's own weights are the model to score and continue from
            model_name = str(run / "final")
        rows.append(scores_for(i, model_name, adapter))
        if adapter is not None and i < len(cfg.stages):
            model_name = str(merge_adapter(model_name, run, cfg.model))
    return write_matrices(root, cfg, tasks, names, rows, log)


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
    (root / "matrix.json").write_text(json.dumps(out, indent=2))
    (root / "matrix.md").write_text("```\n" + "\n\n".join(text) + "\n```\n")
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
