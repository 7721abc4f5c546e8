"""Forgetting: the base model vs the tuned run on the same examples, with paired tests.

Per task: base score, tuned score, and their difference (tuned - base) over the same examples,
computed by the comparison engine (evaluate/comparison.py): the test the metric calls for (exact
McNemar for 0/1 scores, the paired bootstrap otherwise), a CI that agrees with its p, and the
smallest change the test could detect (mde). Summary: the tuned task's gain and the held-out
change (docs/evaluation.md). Both models are scored on the tuned run's split (its ratios and
seed), so the tuned task's examples are its held-out ones.

    <output>/base/ and <output>/tuned/      two evaluations (results.json + per-example files)
    <output>/forgetting.json, forgetting.md

`measure_forgetting` is `tunelab forgetting`; `forgetting_during_training` is the training loop's
hook for a config's `forgetting:` section (<run>/forgetting/).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.config.base import UserError
from tunelab.config.scoring import higher_is_better
from tunelab.evaluate.comparison import compare_metric, held_out_change, mde_text
from tunelab.evaluate.comparison import tuned_task as choose_tuned_task
from tunelab.evaluate.harness import evaluate, limit_origin, read_examples, run_training_data, training_data
from tunelab.evaluate.loading import model_spec, run_base_model
from tunelab.evaluate.shard import ONE, World
from tunelab.files import stored_path, write_json, write_text
from tunelab.metrics.stats import format_p_value, p_clause


def paired_task_diff(base_dir: Path, tuned_dir: Path, base_task: dict, tuned_task: dict,
                     n_resamples: int = 1000) -> dict:
    """The primary metric of one task, tuned - base, paired over the examples both evaluations
    scored (the comparison engine: evaluate/comparison.py)."""
    name, metric = base_task["task"], base_task["primary_metric"]
    base_rows = {r["key"]: r for r in read_examples(base_dir, name)}
    tuned_rows = {r["key"]: r for r in read_examples(tuned_dir, name)}
    # an lm-eval metric carries lm-eval's own direction; tunelab's metrics are known by name
    higher = base_task["metrics"][metric].get("higher_is_better", higher_is_better(metric))
    test = compare_metric(metric, [tuned_rows], [base_rows], base_task.get("labels"), n_resamples, higher=higher)
    if test is None:
        raise UserError(f"task '{name}': the base and tuned evaluations share no example keys ({base_dir}, {tuned_dir})")
    out = {"task": name, "base": base_task["metrics"][metric], "tuned": tuned_task["metrics"][metric], **test}
    if test["n"] != base_task["n"] or test["n"] != tuned_task["n"]:
        out["note"] = (f"paired over the {test['n']} examples both evaluations scored "
                       f"(base {base_task['n']}, tuned {tuned_task['n']})")
    return out


def summarize_forgetting(rows: list[dict], tuned_task: str | None) -> dict:
    """Gain on the tuned task and the held-out change (comparison.held_out_change: one rule)."""
    gain = next((r for r in rows if r["task"] == tuned_task), None)
    return {"tuned_task": tuned_task,
            "gain": None if gain is None else {k: gain[k] for k in ("metric", "diff", "ci", "p_value", "test", "n", "mde")},
            **held_out_change(rows, tuned_task)}


def measure_forgetting(base: str | None, tuned_run: str, tasks: list, *, tuned_task: str | None = None,
                       limit: int | None = None, output_dir: str | Path | None = None, adapter: str | None = None,
                       n_resamples: int = 1000, base_results_dir: str | Path | None = None, **eval_kwargs) -> dict:
    """Evaluate base and tuned on `tasks` (or reuse base_results_dir) and write the forgetting report."""
    run = Path(tuned_run)
    out = Path(output_dir) if output_dir is not None else run / "forgetting"
    base = base or run_base_model(run)
    tuned_spec = model_spec(base, adapter=adapter, run=None if adapter else str(run),
                            dtype=eval_kwargs.get("dtype", "float32"), options=eval_kwargs.get("model_options"))
    if eval_kwargs.get("data_tasks") is None:  # both models on the tuned run's split
        own = run_training_data(tuned_spec) or {}
        eval_kwargs = {**{k: v for k, v in own.items() if k != "seed"}, **eval_kwargs}
        eval_kwargs.setdefault("seed", own.get("seed"))
    base_dir, tuned_dir = Path(base_results_dir) if base_results_dir else out / "base", out / "tuned"
    if base_results_dir is None:
        base_res = evaluate(base, tasks, limit=limit, output_dir=base_dir, n_resamples=n_resamples, **eval_kwargs)
    else:
        base_res = json.loads((base_dir / "results.json").read_text(encoding="utf-8"))
    tuned_res = evaluate(None, tasks, limit=limit, output_dir=tuned_dir, n_resamples=n_resamples, spec=tuned_spec,
                         **{k: v for k, v in eval_kwargs.items() if k != "dtype"})
    # Reused base results name the model that produced them (not necessarily the run's own base:
    # a second-stage run compared with the original model).
    base_label = (base_res.get("model") or {}).get("label") or base
    return write_forgetting(base_res, tuned_res, base_dir, tuned_dir, out, tuned_task or guess_tuned_task(run, list(tuned_res["tasks"])),
                            n_resamples, base_label=base_label, tuned_label=str(run))


def write_forgetting(base_res: dict, tuned_res: dict, base_dir: Path, tuned_dir: Path, out: Path,
                     tuned_task: str | None, n_resamples: int = 1000, base_label: str = "base",
                     tuned_label: str = "tuned") -> dict:
    rows = [paired_task_diff(base_dir, tuned_dir, base_res["tasks"][name], tuned_res["tasks"][name], n_resamples)
            for name in base_res["tasks"] if name in tuned_res["tasks"]]
    report = {"base": base_label, "tuned": tuned_label, "base_dir": str(base_dir), "tuned_dir": str(tuned_dir),
              "n_resamples": n_resamples, "tasks": rows, "summary": summarize_forgetting(rows, tuned_task)}
    # the file names its folders relative to itself when they are inside its folder (a run that moves)
    write_json(out / "forgetting.json", {**report, "base_dir": stored_path(out, base_dir),
                                         "tuned_dir": stored_path(out, tuned_dir)})
    write_text(out / "forgetting.md", forgetting_markdown(report))
    return report


def guess_tuned_task(run: Path, scored: list[str]) -> str | None:
    """The run's tuned task by the one rule (comparison.tuned_task): forgetting.tuned_task when
    the config sets it, else the one scored task the run's model trained on (train_keys.json,
    counting the run it started from; the config's task names when that file is missing)."""
    from tunelab.runfolder import RunFolder

    folder = RunFolder.of(run)
    data = folder.config
    given = (data.get("forgetting") or {}).get("tuned_task")
    trained = folder.trained_tasks()
    if trained is None and data:
        trained = {t.get("name") for t in (data.get("data") or {}).get("tasks") or [] if isinstance(t, dict)}
    return choose_tuned_task([None, trained], scored, given)


def _fmt(x, digits=4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def forgetting_markdown(report: dict) -> str:
    s = report["summary"]
    lines = [f"# Forgetting: {report['tuned']} vs {report['base']}", "",
             "| task | metric | n | base | tuned | diff (tuned - base) | paired 95% CI | p | test | detectable change (80% power) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["tasks"]:
        mark = " (tuned task)" if r["task"] == s["tuned_task"] else ""
        metric = r["metric"] + (" (0-100)" if r.get("scale") == "0-100" else "")
        lines.append(f"| {r['task']}{mark} | {metric} | {r['n']} | {_fmt(r['base']['value'])} | "
                     f"{_fmt(r['tuned']['value'])} | {r['diff']:+.4f} | [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}] | "
                     f"{format_p_value(r['p_value'])} | {r.get('test', 'n/a')} | {mde_text(r)} |")
    lines.append("")
    if s["gain"]:
        g = s["gain"]
        lines.append(f"Gain on the tuned task ({s['tuned_task']}, {g['metric']}): {g['diff']:+.4f} "
                     f"(95% CI [{_fmt(g['ci'][0])}, {_fmt(g['ci'][1])}], {p_clause(g['p_value'])}, {g.get('test')}).")
    if s.get("held_out_change") is not None:
        lines.append(f"Held-out change ({', '.join(s['held_out_change_tasks'])}): {s['held_out_change']:+.4f} "
                     "(mean improvement on a 0-1 scale; negative = worse after tuning; docs/evaluation.md).")
    if s["significant_drops"]:
        lines.append(f"Significant drops (p < 0.05): {', '.join(s['significant_drops'])}.")
    return "\n".join(lines) + "\n"


def _section(cfg):
    from tunelab.config.evaluate import ForgettingConfig

    section = getattr(cfg, "forgetting", None)
    return ForgettingConfig.model_validate(section) if isinstance(section, dict) else section


def _eval_kwargs(cfg, section) -> dict:
    from tunelab.evaluate.loading import load_options

    data = training_data(cfg)
    return dict(model_options=load_options(cfg.model), limit=section.limit,
                limit_from=limit_origin("forgetting.limit", section), split=section.split, batch_size=section.batch_size,
                generation=section.generation, cache=section.cache, n_resamples=section.bootstrap_resamples,
                config_dir=getattr(cfg, "config_dir", "."), allow_train_overlap=section.allow_train_overlap,
                lm_eval=section.lm_eval.model_dump() if section.lm_eval and section.lm_eval.tasks else None, **data)


def check_forgetting_tasks(cfg, tokenizer=None, data=None) -> None:
    """Before training: every `forgetting:` task expands, has a safe unique name and known metrics;
    with the tokenizer and the prepared training data, no task would score this run's training
    examples (unless forgetting.allow_train_overlap)."""
    from tunelab.evaluate.harness import expand_tasks, load_examples, own_task

    section = _section(cfg)
    kwargs = _eval_kwargs(cfg, section)
    specs = expand_tasks(section.tasks, kwargs["config_dir"], kwargs["data_tasks"])
    if kwargs["lm_eval"] and tokenizer is None:  # the model-free pass: installed, known, loadable (lmeval.py)
        from tunelab.evaluate.lmeval import prepare_section

        prepare_section(kwargs["lm_eval"], kwargs["config_dir"], {s["name"] for s in specs})
    if tokenizer is None or data is None or section.allow_train_overlap:
        return
    trained = {ex.content_key for task in data.tasks.values() for ex in task.splits["train"]}
    for spec in specs:
        settings = kwargs["data_settings"] if own_task(spec, kwargs["data_tasks"]) else None
        _, split, examples = load_examples(spec, tokenizer, section.split, section.limit, kwargs["config_dir"],
                                           kwargs["seed"], kwargs["data_split"], settings=settings)
        hits = [ex for ex in examples if ex.content_key in trained]
        if hits:
            from tunelab.config.base import ConfigError

            why = ("inputs that appear in both its training and its " + split + " split (duplicates in the data: "
                   "data.leak_check: remove drops them)") if own_task(spec, kwargs["data_tasks"]) else \
                "examples this run trains on (name the run's own task by its bare name to use its held-out split)"
            raise ConfigError(f"forgetting.tasks: task '{spec['name']}' would score {len(hits)} of {len(examples)} "
                              f"{split} {why}, e.g. {hits[0].source}; or set forgetting.allow_train_overlap: true")


def forgetting_during_training(cfg, run_dir: str | Path, stage: str = "before", world: World = ONE) -> dict | None:
    """The training loop's hook: score cfg.forgetting tasks on the base model ("before", at the
    start) or on the run's final/ ("after", at the end), then write the forgetting report.
    world: the processes sharing the scoring (data parallel, shard.py); the main one writes.

    Results: <run>/forgetting/base/, <run>/forgetting/tuned/, <run>/forgetting/forgetting.json."""
    section = _section(cfg)
    if section is None or not (section.tasks or (section.lm_eval and section.lm_eval.tasks)):
        return None
    if stage not in ("before", "after"):
        raise ValueError("stage must be 'before' or 'after'")
    if not getattr(section, stage):
        return None
    folder = Path(run_dir) / "forgetting"
    kwargs = _eval_kwargs(cfg, section)
    if stage == "before":
        return evaluate(cfg.model.name, section.tasks, output_dir=folder / "base", dtype=section.dtype,
                        world=world, **kwargs)
    tuned = evaluate(None, section.tasks, output_dir=folder / "tuned",
                     spec=model_spec(cfg.model.name, run=str(run_dir), dtype=section.dtype,
                                     options=kwargs["model_options"]), world=world, **kwargs)
    base_file = folder / "base" / "results.json"
    base = json.loads(base_file.read_text(encoding="utf-8")) if base_file.exists() else {"tasks": {}}
    if not set(tuned["tasks"]) <= set(base["tasks"]):  # forgetting.before was off, or other tasks then
        base = evaluate(cfg.model.name, section.tasks, output_dir=folder / "base", dtype=section.dtype,
                        world=world, **kwargs)
    if not world.main:
        return None
    return write_forgetting(base, tuned, folder / "base", folder / "tuned", folder,
                            section.tuned_task or guess_tuned_task(Path(run_dir), list(tuned["tasks"])), section.bootstrap_resamples,
                            base_label=cfg.model.name, tuned_label=str(run_dir))
