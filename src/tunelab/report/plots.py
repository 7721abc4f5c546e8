"""The report's figures, drawn with matplotlib (Agg).

Each figure is rendered twice (`render`): as SVG that report.html inlines, and as PNG that
report.md links. In the SVG every drawn number carries an id (a matplotlib gid) that names it:

    axes/<figure>/<panel>        one panel; its tick labels are real SVG text
    bar/<figure>/<name>          a bar, from 0 to the value
    ci/<figure>/<name>           a 95% CI: one line from the lower to the upper bound
    seed/<figure>/<name>         one point per training seed
    point/<figure>/<name>        a point of the gain-vs-change plot

so the page itself shows that every CI in the JSON is drawn, and where (tests/report/page_check.py
reads the bounds back through the tick labels). Metrics on different scales (0-1, 0-100, each
loss) never share an axis: every figure of values has one panel per scale.
"""

from __future__ import annotations

import io
import re
import textwrap

from tunelab.config.scoring import scale_of
from tunelab.report.text import direction, scale_title

BLUE, GREY, GREEN, RED = "#4c72b0", "#9a9a9a", "#2ca02c", "#d62728"
WIDTH = 7.5  # inches
BAR_ROW = 0.32  # inches per bar
LABEL_WIDTH = 48  # characters per line of a bar's label


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colours() -> list[str]:
    return _plt().rcParams["axes.prop_cycle"].by_key()["color"]


def render(fig, key: str) -> dict:
    """{"svg": inline SVG markup, "png": PNG bytes}; closes the figure."""
    import matplotlib

    plt = _plt()
    # text as <text> (searchable, and the tick labels can be read back); ids salted by the
    # figure's name, so they are stable across runs and unique across one page's figures
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": key}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return {"svg": inline_svg(buf.getvalue(), key), "png": png.getvalue()}


def inline_svg(text: str, key: str) -> str:
    """An SVG file as markup for an HTML page: without its XML prolog, and matplotlib's numbered
    group ids (figure_1, xtick_3, ...) prefixed with the figure's name, since a page holds several
    figures and ids must be unique in it. Our own ids (with a '/') and the hashed ids of markers
    and clip paths are kept."""
    text = text[text.index("<svg"):]
    return re.sub(r'id="([A-Za-z][A-Za-z0-9.]*_\d+)"', rf'id="{key}-\1"', text)


def plain(text: str) -> str:
    """A task or system name as matplotlib text: two '$' in a name would start mathtext."""
    return text.replace("$", r"\$")


def wrap(label: str) -> str:
    """Long names (system labels, second stages) on several lines rather than squeezing the panel."""
    return "\n".join(textwrap.wrap(label, LABEL_WIDTH)) or label


def row_height(rows: list[dict]) -> float:
    """Inches per bar: room for the longest label's lines."""
    lines = max(wrap(r["label"]).count("\n") + 1 for r in rows)
    return BAR_ROW * (1 + 0.5 * (lines - 1))


def _plain_ticks(ax, axis: str = "x") -> None:
    # numbers as written (no offset, no 1e-3 multiplier): what a reader sees is the data value
    ax.ticklabel_format(axis=axis, style="plain", useOffset=False)


def whisker(ax, lo: float, hi: float, at: float, gid: str, vertical: bool = False, colour: str = "black") -> None:
    """A CI as one line from lo to hi with end caps; drawn even when it does not hold the point
    estimate (a percentile interval of a corpus statistic need not)."""
    if vertical:
        ax.plot([at, at], [lo, hi], color=colour, linewidth=1.3, marker="_", markersize=8, gid=gid, zorder=3)
    else:
        ax.plot([lo, hi], [at, at], color=colour, linewidth=1.3, marker="|", markersize=8, gid=gid, zorder=3)


def draw_bars(ax, rows: list[dict], key: str) -> None:
    """rows: {"label", "value", "ci" ([lo, hi] or None), "name" (the gid suffix), "colour",
    optional "seeds" (each training seed's value)} -> horizontal bars, top to bottom."""
    y = list(range(len(rows)))
    bars = ax.barh(y, [r["value"] for r in rows], color=[r.get("colour", BLUE) for r in rows], height=0.7)
    for i, (bar, r) in enumerate(zip(bars, rows)):
        bar.set_gid(f"bar/{key}/{r['name']}")
        if r.get("ci"):
            whisker(ax, r["ci"][0], r["ci"][1], i, f"ci/{key}/{r['name']}")
        if r.get("seeds"):
            ax.plot(r["seeds"], [i] * len(r["seeds"]), "o", markersize=4, markerfacecolor="white",
                    markeredgecolor="black", linestyle="none", gid=f"seed/{key}/{r['name']}", zorder=4)
    ax.set_yticks(y, [plain(wrap(r["label"])) for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.4, -0.6)  # first row on top
    ax.grid(axis="x", alpha=0.3)
    _plain_ticks(ax)


def from_zero(ax, rows: list[dict], scale: str) -> None:
    """Scores (not differences) start at 0; a panel of zeros still shows its scale's range
    rather than an axis around 0 with negative scores no metric has."""
    drawn = [x for r in rows for x in [r["value"], *(r.get("ci") or []), *(r.get("seeds") or [])]]
    if min(drawn) < 0:
        return
    ax.set_xlim(0, ax.get_xlim()[1] if max(drawn) > 0 else (100 if scale == "0-100" else 1))


def group_by_scale(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """rows with a "scale" -> [(scale, rows)], 0-1 first, then 0-100, then each loss."""
    order = {"0-1": 0, "0-100": 1}
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["scale"], []).append(r)
    return sorted(groups.items(), key=lambda kv: (order.get(kv[0], 2), kv[0]))


def bar_panels(rows: list[dict], key: str, title: str, xlabel: str, differences: bool = False):
    """One panel per scale (rows carry "scale"), stacked, each as tall as its bars; differences
    get a line at 0, scores an axis from 0."""
    groups = group_by_scale(rows)
    if not groups:
        return None
    plt = _plt()
    heights = [row_height(g) * len(g) + 0.9 for _, g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(WIDTH, sum(heights) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    for ax, (scale, group) in zip(axes[:, 0], groups):
        ax.set_gid(f"axes/{key}/{scale}")
        draw_bars(ax, group, key)
        if differences:
            ax.axvline(0, color="black", linewidth=0.8)
        else:
            from_zero(ax, group, scale)
        ax.set_title(scale_title(scale), fontsize=9, loc="left")
        ax.set_xlabel(xlabel, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


# What a preference run's training loss is (train.objective; docs/preference.md), per item of a
# step: pairs, or kto's single answers. Its validation loss is not this objective but the SFT
# cross-entropy of the validation answers (train/validate.py), so it gets its own panel.
OBJECTIVE_LOSS = {
    "dpo": "DPO loss ({dpo_loss}), mean per pair",
    "ipo": "IPO loss, mean per pair",
    "simpo": "SimPO loss, mean per pair",
    "orpo": "ORPO loss (chosen answer's NLL + odds-ratio term), mean per pair",
    "kto": "KTO loss, mean per answer",
}
VALIDATION_ANSWERS = {"kto": "the answers' (desirable or not)"}


def loss_points(events: list[dict]) -> tuple[list, list]:
    """(step, training loss) of each step, (step, val_loss) of each validation: what is drawn."""
    train = [(e["step"], e["loss"]) for e in events if e.get("loss") is not None and e.get("split") is None]
    val = [(e["step"], e["val_loss"]) for e in events if e.get("val_loss") is not None]
    return train, val


def loss_curves(events: list[dict], objective: str | None = None, dpo_loss: str | None = None):
    """The training and validation loss over steps: one axis for SFT, where both are the
    completion tokens' cross-entropy; for a preference objective one panel each, labelled with
    what it measures (they are different quantities on different scales)."""
    train, val = loss_points(events)
    if not train and not val:
        return None
    if objective not in (None, "sft"):
        return _preference_loss_curves(train, val, objective, dpo_loss)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6), layout="constrained")
    ax.set_gid("axes/loss/loss")
    if train:
        ax.plot(*zip(*train), label="train loss", color="#1f77b4", linewidth=1.5, gid="curve/loss/train")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss", color=RED, linewidth=2, gid="curve/loss/validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _preference_loss_curves(train: list, val: list, objective: str, dpo_loss: str | None):
    panels = [("train", train), ("validation", val)]
    panels = [(name, points) for name, points in panels if points]
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(WIDTH, 2.9 * len(panels) + 0.4), squeeze=False,
                             layout="constrained")
    steps = [s for _, points in panels for s, _ in points]
    answers = VALIDATION_ANSWERS.get(objective, "the chosen answers'")
    for ax, (name, points) in zip(axes[:, 0], panels):
        ax.set_gid(f"axes/loss/{name}")
        if name == "train":
            what = OBJECTIVE_LOSS.get(objective, f"{objective} loss").format(dpo_loss=dpo_loss or "sigmoid")
            ax.plot(*zip(*points), color="#1f77b4", linewidth=1.5, gid="curve/loss/train")
            ax.set_title(f"training: {what}", fontsize=9, loc="left")
            ax.set_ylabel(f"{objective} loss")
        else:
            ax.plot(*zip(*points), "o-", color=RED, linewidth=2, gid="curve/loss/validation")
            ax.set_title(f"validation: val_loss, {answers} cross-entropy per completion token "
                         f"(SFT loss, not the {objective} objective)", fontsize=9, loc="left")
            ax.set_ylabel("cross-entropy (nats/token)")
        # both panels over the same steps, each with its own labelled step axis
        ax.set_xlim(min(steps) - 0.5, max(steps) + 0.5)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        _plain_ticks(ax, "both")
    fig.suptitle(f"loss curves ({objective}): training and validation measure different things", fontsize=10)
    return fig


def metric_bars(rows: list[dict], title: str, key: str = "metrics"):
    """rows: {"task", "metric", "value", "ci", optional "scale"} -> bars with CI whiskers, a panel per scale."""
    rows = [{**r, "label": f"{r['task']}: {r['metric']}", "name": f"{r['task']}/{r['metric']}",
             "scale": scale_of(r["metric"], r)} for r in rows if r.get("ci")]
    return bar_panels(rows, key, title, "value (95% bootstrap CI)") if rows else None


def _task_label(r: dict, tuned_task: str | None) -> str:
    return f"{r['task']} ({r['metric']})" + ("  [tuned]" if r["task"] == tuned_task else "")


def forgetting_bars(rows: list[dict], tuned_task: str | None):
    """Per task: tuned - base with its paired CI (row["ci"]); green = better after tuning, red = worse."""
    bars = [{"label": _task_label(r, tuned_task), "name": r["task"], "value": r["diff"], "ci": r["ci"],
             "scale": scale_of(r["metric"], r), "colour": GREEN if r["improvement"] >= 0 else RED} for r in rows]
    if not bars:
        return None
    return bar_panels(bars, "forgetting", "tuned - base per task (paired 95% CI)", "tuned - base", differences=True)


def forgetting_scores(rows: list[dict], tuned_task: str | None):
    """Per task: the base and the tuned model's score, each with its own 95% CI."""
    bars = []
    for r in rows:
        for side, colour in (("base", GREY), ("tuned", BLUE)):
            v = r[side]
            bars.append({"label": f"{_task_label(r, tuned_task)}: {side}", "name": f"{r['task']}/{side}",
                         "value": v["value"], "ci": v.get("ci"), "scale": scale_of(r["metric"], r), "colour": colour})
    return bar_panels(bars, "forgetting-scores", "base and tuned scores (95% bootstrap CIs)", "score") if bars else None


def _system_names(table: dict) -> list[str]:
    return table.get("labels") or table["runs"]


def system_bars(table: dict):
    """Each task's metrics, one panel per (task, metric), one bar per system with its 95% CI and,
    for a system trained over several seeds, each seed's value as a dot (compare.json rows)."""
    rows = [r for r in table["rows"] if any(v and v.get("ci") for v in r["values"])]
    if not rows:
        return None
    plt = _plt()
    names, palette = _system_names(table), colours()
    ncols = 1 if len(rows) == 1 else 2
    nrows = -(-len(rows) // ncols)
    per_bar = row_height([{"label": n} for n in names])
    fig, axes = plt.subplots(nrows, ncols, figsize=(WIDTH, nrows * (per_bar * len(names) + 1.1) + 0.5),
                             squeeze=False, layout="constrained")
    for ax, row in zip(axes.flat, rows):
        bars = [{"label": names[i], "name": f"{row['task']}/{row['metric']}/{i}", "value": v["value"],
                 "ci": v.get("ci"), "colour": palette[i % len(palette)], "seeds": v.get("per_seed")}
                for i, v in enumerate(row["values"]) if v is not None]
        ax.set_gid(f"axes/systems/{row['task']}/{row['metric']}")
        draw_bars(ax, bars, "systems")
        scale = scale_of(row["metric"], next(v for v in row["values"] if v))
        from_zero(ax, bars, scale)
        scale_note = scale_title(scale) if scale in ("0-1", "0-100") else direction(scale)
        ax.set_title(plain(f"{row['task']}: {row['metric']}") + (" *" if row["primary"] else "") + f"  [{scale_note}]",
                     fontsize=8, loc="left")
    for ax in list(axes.flat)[len(rows):]:
        ax.set_visible(False)
    fig.suptitle("metrics per system, 95% bootstrap CIs (* primary metric; dots: training seeds)", fontsize=10)
    return fig


def system_diffs(table: dict):
    """Every paired test against the first system (compare.json rows[].tests): difference and its
    paired 95% CI, a panel per scale; each training seed's difference as a dot."""
    names, palette = _system_names(table), colours()
    bars = [{"label": f"{row['task']}: {row['metric']} - {names[i]}", "name": f"{row['task']}/{row['metric']}/{i}",
             "value": t["diff"], "ci": t.get("ci"), "scale": scale_of(row["metric"], t),
             "colour": palette[i % len(palette)], "seeds": t.get("per_seed_diffs")}
            for row in table["rows"] for i, t in enumerate(row["tests"]) if t]
    if not bars:
        return None
    return bar_panels(bars, "systems-diffs", plain(f"each system - {names[0]} on the same examples (paired 95% CIs)"),
                      plain(f"difference from {names[0]}"), differences=True)


def continued_diffs(table: dict):
    """Second stages against the model each continued from (improvements, higher = better)."""
    bars = [{"label": f"{t['task']} ({t['metric']}): {c['label']} vs {c['after_label']}",
             "name": f"{k}/{t['task']}", "value": t["diff"], "ci": t.get("ci"), "scale": scale_of(t["metric"], t),
             "colour": GREEN if t["diff"] >= 0 else RED}
            for k, c in enumerate(table.get("continued") or []) for t in c["tests"]]
    if not bars:
        return None
    return bar_panels(bars, "continued", "second stages vs the model each continued from (paired 95% CIs)",
                      "change (higher = better)", differences=True)


def embed(figure: dict | str, key: str, alt: str) -> str:
    """A figure as report.html shows it: inline SVG in a <figure> (from `render`), or a PNG <img>
    for an image read from a file (a base64 string: the continual heatmap, the search plot)."""
    if isinstance(figure, dict):
        return f"<figure class='plot' id='plot-{key}' role='img' aria-label='{alt}'>{figure['svg']}</figure>"
    return f"<img id='plot-{key}' alt='{alt}' src='data:image/png;base64,{figure}'>"
