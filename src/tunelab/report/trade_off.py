"""The learning-vs-forgetting figure of a comparison (compare.json's `trade_off`).

Each system's gain on its tuned task (y) against its change on the tasks that are no compared
system's tuned task (x: the same tasks for every point, evaluate/comparison.change_of), each a
paired difference against the first system with its 95% CI. Systems tuned on different tasks (an
SFT system on instructions, a DPO system on preference pairs) share the x axis but never a y axis:
a gain in token NLL and a gain in reward accuracy are different quantities, so each tuned task has
its own panel, and the Pareto front is drawn within a panel. Marks carry gids as in plots.py:
`axes/trade_off/gain` (one panel) or `axes/trade_off/gain/<task>`, `point/trade_off/<i>`,
`ci/trade_off/<i>/gain`, `ci/trade_off/<i>/change` (when the change is one task's),
`seed/trade_off/<i>`, `curve/trade_off/interpolation/<g>`.
"""

from __future__ import annotations

from tunelab.report.plots import WIDTH, _plain_ticks, _plt, colours, plain, whisker


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (higher is better on both)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any(x2 >= x and y2 >= y and (x2, y2) != (x, y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


def panels(trade_off: list[dict]) -> dict[str, list[tuple[int, dict]]]:
    """Drawable points (a gain and a change) by tuned task, in the order tasks first appear."""
    found: dict[str, list[tuple[int, dict]]] = {}
    for i, p in enumerate(trade_off):
        if p["gain"] and p["change"] is not None:
            found.setdefault(p.get("tuned_task") or "", []).append((i, p))
    return found


def change_axis_label(point: dict, baseline: str) -> str:
    from tunelab.evaluate.compare import change_label  # the table's wording, one place

    if not point.get("change_tasks"):  # a comparison written before change_tasks: every other task
        tasks = ", ".join(sorted(o["task"] for o in point["others"]))
        return plain(f"change on {tasks} (mean improvement, 0-1 scale) vs {baseline} (< 0: forgetting)")
    return plain(f"{change_label([point])} vs {baseline} (< 0: forgetting)")


def gain_vs_change(trade_off: list[dict], baseline: str):
    """The figure: one panel per tuned task, stacked on a shared x axis; None when no point has
    both a gain and a change."""
    groups = panels(trade_off)
    if not groups:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(groups), 1, figsize=(WIDTH, 4.8 if len(groups) == 1 else 3.6 * len(groups)),
                             sharex=True, layout="constrained", squeeze=False)
    palette = colours()
    curve_index = 0
    for ax, (task, points) in zip(axes[:, 0], groups.items()):
        ax.set_gid("axes/trade_off/gain" if len(groups) == 1 else f"axes/trade_off/gain/{task}")
        curve_index = draw_panel(ax, points, palette, curve_index)
        ax.set_ylabel(plain(f"gain on {task} ({points[0][1]['gain']['metric']} improvement)"))
        ax.tick_params(labelbottom=True)  # every panel's x ticks labelled: each reads on its own
    axes[-1, 0].set_xlabel(change_axis_label(next(iter(groups.values()))[0][1], baseline))
    title = "learning vs forgetting (paired 95% CIs; small dots: training seeds)"
    axes[0, 0].set_title(title if len(groups) == 1 else title + "; one panel per tuned task", fontsize=10)
    return fig


def draw_panel(ax, points: list[tuple[int, dict]], palette: list[str], curve_index: int) -> int:
    """One tuned task's points with their CIs, its Pareto front and interpolation curves; returns
    the next curve number (curve gids count across panels)."""
    xy = [(p["change"], p["gain"]["diff"]) for _, p in points]
    front = pareto_front(xy) if len(points) > 1 else []  # a front of one point says nothing
    for k, (i, p) in enumerate(points):
        x, y = xy[k]
        colour = palette[(i + 1) % len(palette)]
        whisker(ax, p["gain"]["ci"][0], p["gain"]["ci"][1], x, f"ci/trade_off/{i}/gain", vertical=True, colour=colour)
        single = change_test(p)
        if single is not None:  # the x whiskers are a paired CI only when the change is one task's
            whisker(ax, single["ci"][0], single["ci"][1], y, f"ci/trade_off/{i}/change", colour=colour)
        ax.plot([x], [y], "o", markersize=8, color=colour, gid=f"point/trade_off/{i}", zorder=4,
                label=plain(p["label"]) + (" *" if k in front else ""))
        seeds = [s for s in p.get("per_seed") or [] if s.get("change") is not None]
        if seeds:
            ax.plot([s["change"] for s in seeds], [s["gain"] for s in seeds], "o", markersize=4, alpha=0.7,
                    color=colour, linestyle="none", gid=f"seed/trade_off/{i}", zorder=3)
    if front:
        ax.plot(*zip(*sorted(xy[k] for k in front)), "--", color="grey", linewidth=1, label="Pareto front (*)")
    colour_of = {p["system"]: palette[(i + 1) % len(palette)] for i, p in points}
    for name, curve in interpolation_curves(points, xy).items():
        # a small dot at each vertex: the alphas' points and the ends, where the curve bends
        ax.plot(*zip(*curve), "-", marker="o", markersize=2.5, color=colour_of.get(name, "tab:blue"), linewidth=1.2,
                alpha=0.6, gid=f"curve/trade_off/interpolation/{curve_index}", zorder=2,
                label=plain(f"interpolation of {name} (alpha 0 to 1)" if name else "interpolation (alpha 0 to 1)"))
        curve_index += 1
    ax.axhline(0, color="black", linewidth=0.7)
    ax.axvline(0, color="black", linewidth=0.7)
    ax.grid(alpha=0.3)
    _plain_ticks(ax, "both")
    ax.legend(fontsize=8, loc="best")
    return curve_index


def change_test(point: dict) -> dict | None:
    """The one task's paired test a point's change is, when it is one task's (else None: a mean)."""
    tasks = point.get("change_tasks")
    if tasks is None:  # a comparison written before change_tasks: its change was over every other task
        return point["others"][0] if len(point["others"]) == 1 else None
    if len(tasks) != 1:
        return None
    return next((o for o in point["others"] if o["task"] == tasks[0]), None)


def interpolation_curves(points: list, xy: list) -> dict[str, list]:
    """Weight-interpolation points (each with its "alpha") joined in alpha order from the reference
    (alpha = 0, the origin): per interpolated system ("interpolation_of", a study) ending at that
    system's own point (alpha = 1); a sweep of one run ("" : evaluate/interpolation.py) has its
    alpha = 1 among its points."""
    curves: dict[str, list] = {}
    for k, (_, p) in enumerate(points):
        if p.get("alpha") is not None:
            curves.setdefault(p.get("interpolation_of") or "", []).append((p["alpha"], xy[k]))
    for k, (_, p) in enumerate(points):
        if p["system"] in curves:
            curves[p["system"]].append((1.0, xy[k]))
    return {name: [(0.0, 0.0)] + [c for _, c in sorted(found, key=lambda a: a[0])] for name, found in curves.items()}
