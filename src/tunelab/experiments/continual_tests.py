"""What later stages cost each earlier task, as paired tests, and a continual experiment over seeds.

`backward_tests`: for every task learned before the last stage, its score after the last stage
against its score right after the stage that learned it (R[T][j] - R[j][j], the term BWT averages),
paired over the same examples by the comparison engine (evaluate/comparison.py): the test its
metric calls for, CI, p and the detectable change. Over several training seeds each side is the
seeds' runs, so the test counts seed and example variance together.

`run_continual_seeds`: `stages:` with `seeds:` runs the whole continual experiment once per
training seed (<name>/seed-<s>/, each an ordinary continual folder with its own matrix), then
writes <name>/seeds.json and <name>/matrix_over_seeds.json / .md: every cell's mean and seed SD,
ACC / BWT / FWT per seed with their mean and SD and whether BWT's sign holds in every seed, and
the seed-aware backward tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tunelab.files import write_json, write_text


def cell_folder(root: Path, row: int, kind: str) -> Path:
    """Where the continual experiment keeps R[row][*]'s per-example rows (score: generation; loss:
    answer-token NLL)."""
    folder = root / "scores" / f"stage-{row:02d}"
    return folder / "loss" if kind == "loss" else folder


def backward_tests(roots: list[Path], tasks: list[str], learned: dict, n_stages: int, kind: str = "score",
                   n_resamples: int = 1000) -> dict:
    """task -> the paired test of R[T][task] - R[learned][task] over the roots (one per seed)."""
    from tunelab.evaluate.comparison import compare_metric
    from tunelab.evaluate.harness import read_examples

    # every row scores the same tasks the same way: one results.json says each task's metric and labels
    scored = json.loads((cell_folder(roots[0], n_stages, kind) / "results.json").read_text(encoding="utf-8"))["tasks"]
    out = {}
    for task in tasks:
        at = learned.get(task)
        if at is None or at >= n_stages:
            continue
        info = scored[task]
        metric = info["primary_metric"]
        after = [{r["key"]: r for r in read_examples(cell_folder(root, n_stages, kind), task)} for root in roots]
        then = [{r["key"]: r for r in read_examples(cell_folder(root, at, kind), task)} for root in roots]
        test = compare_metric(metric, after, then, info.get("labels"), n_resamples,
                              higher=info["metrics"][metric].get("higher_is_better"))
        if test is not None:
            out[task] = {"stage_learned": at, "stage_last": n_stages, **test}
    return out


def run_continual_seeds(cfg, resume: bool = False, log=print) -> Path:
    """The continual experiment once per training seed, then the matrices over the seeds."""
    from tunelab.config import write_resolved
    from tunelab.experiments.continual import run_continual
    from tunelab.experiments.seeds import check_folder, seed_config, seed_name, write_seeds
    from tunelab.train.run import run_dir

    root = run_dir(cfg)
    configs = [(s, seed_config(cfg, s, root)) for s in cfg.seeds]
    check_folder(root, resume)
    write_resolved(cfg, root)
    for i, (seed, seed_cfg) in enumerate(configs, start=1):
        folder = root / seed_name(seed)
        if (folder / "matrix.json").exists():
            log(f"seed {i}/{len(configs)}: {folder}: done earlier, kept")
            continue
        log(f"seed {i}/{len(configs)}: {folder}")
        run_continual(seed_cfg, resume=folder.exists(), log=log)
    write_seeds(root, cfg.seeds)
    write_over_seeds(root, [root / seed_name(s) for s in cfg.seeds], cfg.seeds, log)
    return root


def write_over_seeds(root: Path, folders: list[Path], seeds: list[int], log=print) -> dict:
    per_seed = [json.loads((f / "matrix.json").read_text(encoding="utf-8")) for f in folders]
    first = per_seed[0]
    out = {"seeds": list(seeds), "tasks": first["tasks"], "stages": first["stages"],
           "learned_at": first["learned_at"], "matrices": {}}
    for kind in first["matrices"]:
        cells = np.asarray([m["matrices"][kind]["scores"] for m in per_seed], dtype=float)
        higher = first["matrices"][kind]["higher_is_better"]
        summary = {}
        for key in ("ACC", "BWT", "FWT"):
            values = [m["matrices"][kind]["summary"][key] for m in per_seed]
            if any(v is None for v in values):
                continue
            mean = float(np.mean(values))
            summary[key] = {"mean": mean, "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                            "per_seed": values,
                            "holds_in_every_seed": mean != 0 and all(np.sign(v) == np.sign(mean) for v in values)}
        out["matrices"][kind] = {
            "metric": first["matrices"][kind]["metric"], "higher_is_better": higher,
            "mean": cells.mean(axis=0).tolist(), "sd": cells.std(axis=0, ddof=1).tolist() if len(folders) > 1 else None,
            "summary": summary,
            "backward_tests": backward_tests(folders, first["tasks"], first["learned_at"], len(first["stages"]) - 1,
                                             kind)}
    write_json(root / "matrix_over_seeds.json", out)
    text = over_seeds_markdown(out)
    write_text(root / "matrix_over_seeds.md", text)
    log(text)
    return out


def over_seeds_markdown(out: dict) -> str:
    from tunelab.evaluate.comparison import mde_text
    from tunelab.metrics.stats import p_clause

    lines = [f"# Continual experiment over training seeds {', '.join(map(str, out['seeds']))}", ""]
    for kind, m in out["matrices"].items():
        lines += [f"## R[stage][task]: {kind}, mean (seed SD)", "", "| stage | " + " | ".join(out["tasks"]) + " |",
                  "|" + "---|" * (len(out["tasks"]) + 1)]
        for r, stage in enumerate(out["stages"]):
            cells = [f"{m['mean'][r][c]:.4f}" + (f" ({m['sd'][r][c]:.4f})" if m["sd"] else "")
                     for c in range(len(out["tasks"]))]
            lines.append(f"| {stage} | " + " | ".join(cells) + " |")
        lines.append("")
        for key, s in m["summary"].items():
            seeds = ", ".join(f"{v:+.4f}" for v in s["per_seed"])
            lines.append(f"- {key}: {s['mean']:+.4f} (per seed {seeds}; "
                         f"{'same sign in every seed' if s['holds_in_every_seed'] else 'sign differs between seeds'})")
        for task, t in m["backward_tests"].items():
            lines.append(f"- {task}: after the last stage vs after stage {t['stage_learned']} ({t['metric']}): "
                         f"{t['diff']:+.4f} [{t['ci'][0]:+.4f}, {t['ci'][1]:+.4f}] ({p_clause(t['p_value'])}, "
                         f"{t['test']}; could see {mde_text(t)})")
        lines.append("")
    return "\n".join(lines)
