"""The task x stage matrix of a continual run and its summaries ACC, BWT, FWT.

Lopez-Paz & Ranzato (2017), "Gradient Episodic Memory for Continual Learning", section 2:
R[i][j] is the score on task j after training stage i (i = 1..T) and b_j the score of the
model before any training (here: row 0 = the base model). With task j learned at stage j:

    ACC = 1/T     * sum_{j=1..T}   R[T][j]
    BWT = 1/(T-1) * sum_{j=1..T-1} R[T][j] - R[j][j]
    FWT = 1/(T-1) * sum_{j=2..T}   R[j-1][j] - b_j

Normalisation: none. Values are raw differences in the metric's own units (accuracy points
when the metric is accuracy in [0, 1]; nats when it is a loss). For lower-is-better metrics
(losses) the differences are negated, so that for every metric BWT < 0 means forgetting and
FWT > 0 means positive transfer.

Generalisation used by tunelab: a stage may train several tasks and a task may never be
trained (a held-out task). Each trained task j has `learned_at[j]` = the first stage (1-based)
that trains it; BWT averages over trained tasks learned before the last stage, FWT over
trained tasks learned after the first stage, ACC over all trained tasks. Held-out tasks get
their own summary: the mean change from base after the last stage (`held_out_change`).

Pure Python: no torch, no numpy needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class StageMatrix:
    tasks: list[str]
    # stages[0] is "base"; stages[i] the i-th trained stage.
    stages: list[str]
    # scores[i][j]: score of task j after stage i (row 0 = base model = GEM's b vector).
    scores: list[list[float]]
    # task -> first stage (1-based) that trained it; tasks absent here are held-out.
    learned_at: dict[str, int]
    metric: str = "score"
    higher_is_better: bool = True
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def learned_at_from_stages(stage_tasks: list[list[str]]) -> dict[str, int]:
    """First stage (1-based) training each task."""
    first: dict[str, int] = {}
    for i, tasks in enumerate(stage_tasks, start=1):
        for task in tasks:
            first.setdefault(task, i)
    return first


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def matrix_summary(
    scores: list[list[float]],
    tasks: list[str],
    learned_at: dict[str, int],
    higher_is_better: bool = True,
) -> dict:
    """ACC, BWT, FWT (GEM definitions, raw metric units) plus per-task detail.

    `scores` has T+1 rows (row 0 = base) and one column per task.
    """
    n_stages = len(scores) - 1
    if n_stages < 1:
        raise ValueError("the matrix needs the base row and at least one trained stage")
    for i, row in enumerate(scores):
        if len(row) != len(tasks):
            raise ValueError(f"matrix row {i} has {len(row)} scores for {len(tasks)} tasks")
    for task, stage in learned_at.items():
        if task not in tasks:
            raise ValueError(f"learned_at names task '{task}' that is not a matrix column")
        if not 1 <= stage <= n_stages:
            raise ValueError(f"task '{task}' learned at stage {stage}, outside 1..{n_stages}")
    sign = 1.0 if higher_is_better else -1.0
    col = {task: j for j, task in enumerate(tasks)}
    last = scores[n_stages]
    trained = [t for t in tasks if t in learned_at]
    held_out = [t for t in tasks if t not in learned_at]

    backward = {
        t: sign * (last[col[t]] - scores[learned_at[t]][col[t]])
        for t in trained
        if learned_at[t] < n_stages
    }
    forward = {
        t: sign * (scores[learned_at[t] - 1][col[t]] - scores[0][col[t]])
        for t in trained
        if learned_at[t] > 1
    }
    held = {t: sign * (last[col[t]] - scores[0][col[t]]) for t in held_out}
    return {
        "ACC": _mean([last[col[t]] for t in trained]),
        "BWT": _mean(list(backward.values())),
        "FWT": _mean(list(forward.values())),
        "held_out_change": _mean(list(held.values())),
        "per_task_backward": backward,
        "per_task_forward": forward,
        "per_task_held_out_change": held,
        "normalisation": "raw metric differences (no scaling); negated for lower-is-better metrics",
    }


def build_matrix(
    scores: list[list[float]],
    tasks: list[str],
    stage_names: list[str],
    learned_at: dict[str, int],
    metric: str = "score",
    higher_is_better: bool = True,
) -> StageMatrix:
    if len(stage_names) != len(scores):
        raise ValueError(f"{len(stage_names)} stage names for {len(scores)} matrix rows")
    summary = matrix_summary(scores, tasks, learned_at, higher_is_better)
    return StageMatrix(tasks, stage_names, scores, learned_at, metric, higher_is_better, summary)


def format_matrix(matrix: StageMatrix, digits: int = 4) -> str:
    """A plain-text table: one row per stage, one column per task, then the summaries."""
    width = max([len(t) for t in matrix.tasks] + [8]) + 2
    name_w = max([len(s) for s in matrix.stages] + [6]) + 2
    lines = [f"R[stage][task] ({matrix.metric}, {'higher' if matrix.higher_is_better else 'lower'} is better)"]
    lines.append("stage".ljust(name_w) + "".join(t.rjust(width) for t in matrix.tasks))
    for stage, row in zip(matrix.stages, matrix.scores):
        lines.append(stage.ljust(name_w) + "".join(f"{v:.{digits}f}".rjust(width) for v in row))
    for key in ("ACC", "BWT", "FWT", "held_out_change"):
        value = matrix.summary.get(key)
        lines.append(f"{key}: {'n/a' if value is None else f'{value:+.{digits}f}'}")
    return "\n".join(lines)
