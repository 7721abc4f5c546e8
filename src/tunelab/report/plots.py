"""The report's figures, drawn with matplotlib (Agg) and returned as base64 PNG strings."""

from __future__ import annotations

import base64
import io


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_base64(fig) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def loss_curves(events: list[dict]) -> str | None:
    train = [(e["step"], e["loss"]) for e in events if e.get("loss") is not None and e.get("split") is None]
    val = [(e["step"], e["val_loss"]) for e in events if e.get("val_loss") is not None]
    if not train and not val:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if train:
        ax.plot(*zip(*train), label="train loss", color="#1f77b4", linewidth=1.5)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss", color="#d62728", linewidth=2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    return to_base64(fig)


def metric_bars(rows: list[dict], title: str) -> str | None:
    """rows: {"label", "value", "ci": [lo, hi]} -> horizontal bars with CI whiskers."""
    rows = [r for r in rows if r.get("ci")]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    y = list(range(len(rows)))
    values = [r["value"] for r in rows]
    err = [[r["value"] - r["ci"][0] for r in rows], [r["ci"][1] - r["value"] for r in rows]]
    ax.barh(y, values, xerr=err, color="#4c72b0", capsize=4, ecolor="black")
    ax.set_yticks(y, [r["label"] for r in rows])
    ax.invert_yaxis()
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return to_base64(fig)


def forgetting_bars(rows: list[dict], tuned_task: str | None) -> str | None:
    """Per task: tuned - base with its paired CI; green = better after tuning, red = worse."""
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(rows) + 1.4))
    y = list(range(len(rows)))
    diffs = [r["diff"] for r in rows]
    lo = [r["diff"] - r["ci"][0] if r.get("paired_on") == r["metric"] else 0 for r in rows]
    hi = [r["ci"][1] - r["diff"] if r.get("paired_on") == r["metric"] else 0 for r in rows]
    colors = ["#2ca02c" if r["improvement"] >= 0 else "#d62728" for r in rows]
    ax.barh(y, diffs, xerr=[lo, hi], color=colors, capsize=4, ecolor="black")
    labels = [f"{r['task']} ({r['metric']})" + ("  [tuned]" if r["task"] == tuned_task else "") for r in rows]
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("tuned - base (95% paired-bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    return to_base64(fig)


def system_bars(table: dict) -> str | None:
    """Each task's primary metric, one bar per system, with the 95% CI whiskers (compare.json)."""
    rows = [r for r in table["rows"] if r["primary"]]
    if not rows:
        return None
    plt = _plt()
    systems = table.get("labels") or table["runs"]
    fig, axes = plt.subplots(1, len(rows), figsize=(min(4.2 * len(rows), 12), 0.45 * len(systems) + 1.6),
                             squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, row in zip(axes[0], rows):
        y, values, err = [], [], [[], []]
        for i, v in enumerate(row["values"]):
            if v is None:
                continue
            y.append(i)
            values.append(v["value"])
            lo, hi = v.get("ci") or (v["value"], v["value"])
            err[0].append(v["value"] - lo)
            err[1].append(hi - v["value"])
        ax.barh(y, values, xerr=err, color=[colours[i % len(colours)] for i in y], capsize=3, ecolor="black")
        ax.set_yticks(range(len(systems)), systems if ax is axes[0][0] else [""] * len(systems))
        ax.invert_yaxis()
        ax.set_title(f"{row['task']}: {row['metric']}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("each task's primary metric, 95% bootstrap CIs", fontsize=10)
    return to_base64(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (higher is better on both)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any(x2 >= x and y2 >= y and (x2, y2) != (x, y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return front


def gain_vs_change(trade_off: list[dict], tuned_task: str, baseline: str) -> str | None:
    """Learning vs forgetting: gain on the tuned task (y) against the average change on the other
    tasks (x), against the first system, with paired 95% CIs; the Pareto front joined."""
    points = [p for p in trade_off if p["gain"] and p["change"] is not None]
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.6))
    xy = [(p["change"], p["gain"]["diff"]) for p in points]
    front = pareto_front(xy)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, p in enumerate(points):
        x, y = xy[i]
        g = p["gain"]
        # the x whiskers are a paired CI only when the change is one task's (an average has none here)
        xerr = [[x - p["others"][0]["ci"][0]], [p["others"][0]["ci"][1] - x]] if len(p["others"]) == 1 else None
        ax.errorbar([x], [y], xerr=xerr, yerr=[[y - g["ci"][0]], [g["ci"][1] - y]], fmt="o", markersize=8,
                    capsize=4, color=colours[(i + 1) % len(colours)], label=p["label"] + (" *" if i in front else ""))
    line = sorted(xy[i] for i in front)
    ax.plot(*zip(*line), "--", color="grey", linewidth=1, label="Pareto front (*)")
    ax.axhline(0, color="black", linewidth=0.7)
    ax.axvline(0, color="black", linewidth=0.7)
    others = sorted({o["task"] for p in points for o in p["others"]})
    ax.set_xlabel(f"change on {', '.join(others)} vs {baseline} (< 0: forgetting)")
    ax.set_ylabel(f"gain on {tuned_task} ({points[0]['gain']['metric']})")
    ax.set_title("learning vs forgetting (paired 95% CIs)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return to_base64(fig)
