"""The comparison engine: every paired comparison tunelab prints is computed here.

Users: a run's `forgetting:` section and `tunelab forgetting` (evaluate/forgetting.py), `tunelab
compare`, second stages, the study and the demo (evaluate/compare.py), the continual matrix and
the search's forgetting objective (through the forgetting summary). One module so that there is
one rule for each of:

- pairing: rows are paired by example key; only keys every compared run scored take part, and the
  result says how many (n);
- the test: chosen by the metric (metrics/paired.py): exact McNemar for 0/1 per-example scores,
  the paired bootstrap for other means and for corpus statistics (BLEU, chrF, macro-F1,
  perplexity), the seeds-and-examples t interval when a system was trained over several seeds;
  each with a CI that agrees with its p, and the minimum detectable effect (mde);
- the sign: `improvement` is the difference with the sign flipped for lower-is-better metrics
  (> 0: the first system is better), with its CI `improvement_ci`;
- the held-out summary (`held_out_change`): the mean improvement over held-out tasks whose primary
  metric has a bounded scale (0-1 as is, 0-100 divided by 100); unbounded metrics (perplexity,
  NLL, bits per byte) are listed apart, never averaged (docs/evaluation.md, "Held-out change");
- the tuned task (`tuned_task`): given, else the one compared task every tuned system trained on;
  per system (`tuned_tasks`), else the one compared task that system trained on, so that systems
  tuned on different tasks (SFT on instructions, DPO on preference pairs) each have their own;
- the change side of a trade-off (`change_of`): the tasks that are no compared system's tuned task.
"""

from __future__ import annotations

import numpy as np

from tunelab.config.scoring import PERCENT_SCALE, higher_is_better, scale_of
from tunelab.evaluate.scoring import statistic_of
from tunelab.metrics.paired import paired_test, paired_test_statistic, seed_half_width, seed_noise, seeds_and_examples


def paired_keys(*systems: list[dict]) -> list[str]:
    """The example keys every given run scored (each a dict key -> row), in the first's order."""
    first, rest = systems[0], systems[1:]
    return [k for k in first if all(k in other for other in rest)]


def _rows(by_key: dict, keys: list[str]) -> list[dict]:
    return [by_key[k] for k in keys]


def compare_metric(metric: str, runs_a: list[dict], runs_b: list[dict], labels: list[str] | None = None,
                   n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                   higher: bool | None = None, seeds: tuple = (None, None)) -> dict:
    """metric(a) - metric(b) on the examples both scored, with the test the metric calls for.

    runs_a / runs_b: one system's runs (one per training seed; one for a single run or the base
    model), each a dict example key -> per-example row. seeds: each side's seed numbers (for
    matching per-seed differences), optional."""
    keys = paired_keys(*runs_a, *runs_b)
    if not keys:
        return None
    rows_a, rows_b = [_rows(r, keys) for r in runs_a], [_rows(r, keys) for r in runs_b]
    if len(rows_a) == 1 and len(rows_b) == 1:
        test = _single(metric, rows_a[0], rows_b[0], labels, n_resamples, confidence, seed)
    else:
        test = _seeded(metric, rows_a, rows_b, labels, n_resamples, confidence, seed, seeds)
    test.update(metric=metric, score_key=metric, higher_is_better=higher_is_better(metric) if higher is None else higher)
    test.update(improvement=sign(test) * test["diff"], improvement_ci=sorted(sign(test) * x for x in test["ci"]))
    if metric in PERCENT_SCALE:
        test["scale"] = "0-100"
    return test


def sign(test: dict) -> float:
    """The sign rule: +1 where higher is better, -1 for a lower-is-better metric (a loss), so that
    sign x difference is an improvement."""
    return 1.0 if test.get("higher_is_better", True) else -1.0


def _single(metric, rows_a, rows_b, labels, n_resamples, confidence, seed) -> dict:
    stat = statistic_of(metric, rows_a, labels)
    if stat is not None:
        stats_b, _ = statistic_of(metric, rows_b, labels)
        test = paired_test_statistic(stat[0], stats_b, stat[1], n_resamples, seed, confidence)
        test["paired_on"] = f"corpus {metric} (summed per-example statistics)"
        return test
    a = np.asarray([r["scores"][metric] for r in rows_a], dtype=float)
    b = np.asarray([r["scores"][metric] for r in rows_b], dtype=float)
    test = paired_test(a, b, n_resamples, seed, confidence)
    test["paired_on"] = f"per-example {metric}"
    return test


def _seeded(metric, rows_a, rows_b, labels, n_resamples, confidence, seed, seeds) -> dict:
    """Several seeds on a side: each seed's corpus value, and the example-level variance of the
    seed-averaged difference (per-example for means, bootstrapped for corpus statistics)."""
    from tunelab.metrics.stats import resample_counts

    n = len(rows_a[0])
    stat = statistic_of(metric, rows_a[0], labels)
    if stat is None:
        per_a = np.asarray([[r["scores"][metric] for r in rows] for rows in rows_a], dtype=float)
        per_b = np.asarray([[r["scores"][metric] for r in rows] for rows in rows_b], dtype=float)
        values_a, values_b = per_a.mean(axis=1), per_b.mean(axis=1)
        d = per_a.mean(axis=0) - per_b.mean(axis=0)
        example_var = float(d.var(ddof=1) / n) if n > 1 else 0.0
        noise = (seed_noise(per_a), seed_noise(per_b))
        paired_on = f"per-example {metric}, averaged over seeds"
    else:
        score_fn = stat[1]
        sa = [stat[0]] + [statistic_of(metric, rows, labels)[0] for rows in rows_a[1:]]  # seed 0's: above
        sb = [statistic_of(metric, rows, labels)[0] for rows in rows_b]
        values_a = np.asarray([float(score_fn(s.sum(axis=0)[None])[0]) for s in sa])
        values_b = np.asarray([float(score_fn(s.sum(axis=0)[None])[0]) for s in sb])
        diffs = np.concatenate([np.mean([score_fn(c @ s) for s in sa], axis=0) - np.mean([score_fn(c @ s) for s in sb], axis=0)
                                for c in resample_counts(n, n_resamples, seed)])
        example_var = float(diffs.var(ddof=1))
        noise = (0.0, 0.0)  # not separable for a corpus statistic: the seed part stays conservative
        paired_on = f"corpus {metric} per seed (summed per-example statistics)"
    test = seeds_and_examples(values_a, values_b, example_var, n, confidence, *seeds, noise=noise)
    test.update(paired_on=paired_on, per_seed=[values_a.tolist(), values_b.tolist()])
    return test


def system_value(entries: list[dict], confidence: float = 0.95) -> dict:
    """One system's score over its seeds: the mean of the seeds' values, each seed's value, the
    seed-to-seed SD, and the interval every seed-aware result uses (metrics/paired.seed_half_width:
    a t part for the seed variance s^2 / k, k - 1 df, and a z part for the mean per-seed example
    variance, read from each seed's bootstrap CI; seeds see the same examples, so averaging them
    does not shrink that part)."""
    from scipy.stats import norm

    values = np.asarray([e["value"] for e in entries], dtype=float)
    k = len(values)
    if k == 1:
        return dict(entries[0])
    alpha = 1 - confidence
    z = norm.isf(alpha / 2)
    ex = [((e["ci"][1] - e["ci"][0]) / (2 * z)) ** 2 for e in entries if e.get("ci")]
    half = seed_half_width(alpha, float(values.var(ddof=1)) / k, k - 1, float(np.mean(ex)) if ex else 0.0)
    mean = float(values.mean())
    return {**{k2: v for k2, v in entries[0].items() if k2 not in ("value", "ci")}, "value": mean,
            "ci": [mean - half, mean + half], "per_seed": values.tolist(), "seed_sd": float(values.std(ddof=1))}


def bounded_improvement(test: dict) -> float | None:
    """The improvement on a common 0-1 scale (0-100 metrics / 100), None for unbounded metrics."""
    scale = scale_of(test["metric"], test)
    if scale not in ("0-1", "0-100"):  # a loss: its own units, never averaged with scores
        return None
    return test["improvement"] / (100.0 if scale == "0-100" else 1.0)


def held_out_change(tests: list[dict], tuned_task: str | None, trained: set[str] | None = None) -> dict:
    """The one held-out summary: mean improvement (common 0-1 scale) over the tasks other than the
    tuned one that the system did not train on; tests: {task, metric, improvement, ...} per task."""
    held = [t for t in tests if t["task"] != tuned_task and t["task"] not in (trained or set())]
    scored = [(t["task"], bounded_improvement(t)) for t in held]
    used = [(task, x) for task, x in scored if x is not None]
    return {"held_out_change": float(np.mean([x for _, x in used])) if used else None,
            "held_out_change_tasks": [task for task, _ in used],
            "held_out_unaveraged": [task for task, x in scored if x is None],
            "held_out_tasks": [t["task"] for t in held],
            "significant_drops": [t["task"] for t in held if t["improvement"] < 0 and t["p_value"] < 0.05]}


def tuned_task(trained: list[set[str] | None], common: list[str], given: str | None = None) -> str | None:
    """The tuned task: `given`, else the one compared task every tuned system (all but the first,
    which is the reference) trained on. trained: each system's trained tasks (None: unknown)."""
    if given:
        return given
    sets = [s & set(common) for s in trained[1:] if s is not None]
    if not sets:
        return None
    shared = set.intersection(*sets)
    return shared.pop() if len(shared) == 1 else None


def tuned_tasks(trained: list[set[str] | None], common: list[str], given: dict[int, str] | None = None) -> list:
    """Each system's tuned task (None for the first, the reference): `given` by system index, else
    the one task every tuned system trained on (`tuned_task`), else the one compared task that
    system trained on. Systems tuned on different tasks (an SFT and a DPO system) each keep their
    own; a system whose training is unknown, or that trained on several compared tasks, has none."""
    given = given or {}
    shared = tuned_task(trained, common)
    out: list[str | None] = [None]
    for i, own in enumerate(trained[1:], start=1):
        mine = (own or set()) & set(common)
        out.append(given.get(i) or shared or (mine.pop() if len(mine) == 1 else None))
    return out


def change_of(tests: list[dict], tuned: set[str]) -> dict:
    """The change side of the trade-off (the x of gain vs forgetting): over the tasks that are no
    compared system's tuned task, the held-out mean of their bounded improvements
    (`held_out_change`); with no bounded task but exactly one task, that task's improvement in
    its own units (a loss is never averaged, but one loss is its own measure). tests: {task,
    metric, improvement, ...}; returns {change, change_tasks, change_unit ("0-1" or the metric)}."""
    side = [t for t in tests if t["task"] not in tuned]
    summary = held_out_change(side, None)
    if summary["held_out_change"] is not None:
        return {"change": summary["held_out_change"], "change_tasks": summary["held_out_change_tasks"],
                "change_unit": "0-1"}
    if len(side) == 1:
        return {"change": side[0]["improvement"], "change_tasks": [side[0]["task"]], "change_unit": side[0]["metric"]}
    return {"change": None, "change_tasks": [], "change_unit": None}


def mde_text(row: dict) -> str:
    """The smallest change a row's test could detect (80% power): "≥ 4.1 points" for a 0-1 metric
    (percentage points, 100 x mde), "≥ 2.30 bleu" for a 0-100 one, "≥ 0.0123 token_nll" for an
    unbounded loss; "n/a" without an mde. Every table and sentence that prints an mde uses this."""
    mde, metric = row.get("mde"), row.get("metric", "")
    if mde is None:
        return "n/a"
    scale = scale_of(metric, row)
    if scale == "0-1":
        return f"≥ {100 * mde:.1f} points"
    return f"≥ {mde:.2f} {metric}" if scale == "0-100" else f"≥ {mde:.4f} {metric}"
