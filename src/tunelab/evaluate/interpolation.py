"""Weight-space interpolation sweep (WiSE-FT): what each point between base and tuned gains and forgets.

The run's model is evaluated at theta(alpha) = (1 - alpha) * theta_base + alpha * theta_tuned for
each alpha (tunelab.models.interpolate; LoRA, DoRA and IA3 through their merged weights), on the
run's own split, and every alpha becomes one system of a comparison (evaluate/compare.py): each
paired against alpha = 0, the base model, with the engine's tests and CIs, and the trade-off
between the gain on the tuned task and the change on the others. No training: the sweep costs
only evaluation. Wortsman et al. 2022, "Robust fine-tuning of zero-shot models" (arXiv:2109.01903);
Lin et al. 2024, "Mitigating the alignment tax of RLHF" (arXiv:2309.06256), where weight
averaging gives the best alignment-vs-forgetting trade-off among the remedies compared.

Output (default <run>/interpolation/): alpha-<a>/ (each alpha's results.json and per-example
JSONL), compare.json / compare.md (with "interpolation": the run and the alphas), report.html.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.config.base import UserError
from tunelab.files import write_json, write_text

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def sweep_alphas(alphas) -> list[float]:
    """Sorted, distinct alphas in [0, 1], with 0 (the base model: every test's reference) first."""
    from tunelab.models.interpolate import check_alpha

    values = sorted({check_alpha(a) for a in alphas} | {0.0})
    if len(values) < 2:
        raise UserError("give at least one alpha above 0 (0 is the base model, the reference)")
    return values


def alpha_name(alpha: float) -> str:
    return f"alpha-{alpha:g}"


def interpolation_sweep(run: str | Path, tasks: list, alphas=DEFAULT_ALPHAS, output_dir: str | Path | None = None,
                        tuned_task: str | None = None, n_resamples: int = 1000, **eval_kwargs) -> dict:
    """Evaluate `run`'s model at each alpha and compare them all against alpha = 0; return the
    comparison table (also compare.json in the output folder, with the report beside it)."""
    from tunelab.evaluate.compare import compare_markdown, compare_runs
    from tunelab.evaluate.forgetting import guess_tuned_task
    from tunelab.evaluate.harness import evaluate
    from tunelab.evaluate.loading import model_spec
    from tunelab.report import write_report

    run = Path(run)
    values = sweep_alphas(alphas)
    out = Path(output_dir) if output_dir is not None else run / "interpolation"
    dtype = eval_kwargs.pop("dtype", None) or "float32"
    options = eval_kwargs.pop("model_options", None)
    # every spec first: a run that cannot be interpolated (prompt tuning) is refused before any scoring
    specs = [model_spec(run=str(run), dtype=dtype, options=options, alpha=a) for a in values]
    folders = []
    for alpha, spec in zip(values, specs):
        spec.label = f"alpha={alpha:g}"
        folders.append(out / alpha_name(alpha))
        results = evaluate(None, tasks, spec=spec, output_dir=folders[-1], n_resamples=n_resamples, **eval_kwargs)
    tuned = tuned_task or guess_tuned_task(run, list(results["tasks"]))
    table = compare_runs(folders, tuned_task=tuned, n_resamples=n_resamples)
    labels = [f"alpha={a:g}" for a in values]
    table["labels"] = labels
    for point in table.get("trade_off") or []:
        point["label"] = labels[table["runs"].index(point["system"])]
    table["interpolation"] = {"run": str(run), "alphas": values, "tuned_task": table.get("tuned_task")}
    write_json(out / "compare.json", table)
    write_text(out / "compare.md", compare_markdown(table))
    write_report(out)
    return table


def interpolate_run(cfg, run: str | Path, alphas) -> list[Path]:
    """A training run's `forgetting:` tasks scored at each alpha, as the run itself scored them
    after training (same examples, split, settings): the folders <run>/interpolation/alpha-<a>/,
    each an evaluation compare_runs pairs like a run (its results.json names the run and alpha).
    Cached per alpha: a study that runs again scores nothing twice."""
    from tunelab.evaluate.forgetting import _eval_kwargs, _section
    from tunelab.evaluate.harness import evaluate
    from tunelab.evaluate.loading import model_spec

    section = _section(cfg)
    kwargs = _eval_kwargs(cfg, section)
    options = kwargs.pop("model_options")
    folders = []
    for alpha in alphas:
        spec = model_spec(cfg.model.name, run=str(run), dtype=section.dtype, options=options, alpha=alpha)
        spec.label = f"alpha={alpha:g}"
        folders.append(Path(run) / "interpolation" / alpha_name(alpha))
        evaluate(None, section.tasks, spec=spec, output_dir=folders[-1], **kwargs)
    return folders
