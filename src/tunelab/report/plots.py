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
