"""Figures of the paper's results: the reward-vs-KL frontier (Figure 2) and mask sparsity / token KL over
training (Figure 3).

Figures are built on the Agg canvas directly (no pyplot), so plotting works headless, in Ray workers and in
threads, and never touches pyplot's global figure state. ``*_figure`` functions return the Figure so callers
and tests can inspect the plotted data; ``plot_*`` functions write a PNG and return its path.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from sparsepo.analysis.figures import new_figure, save_png

# Figure 3's panels: column of the per-step metrics table -> axis label.
SPARSITY_PANELS: dict[str, str] = {
    "sparsity/reward/chosen": "reward-mask sparsity, chosen (%)",
    "sparsity/kl/chosen": "KL-mask sparsity, chosen (%)",
    "kl/chosen": "token KL, chosen (nats, summed over tokens)",
}
# Appendix Figure 7: the same for the rejected responses, and the training loss beside them.
REJECTED_PANELS: dict[str, str] = {
    "sparsity/reward/rejected": "reward-mask sparsity, rejected (%)",
    "sparsity/kl/rejected": "KL-mask sparsity, rejected (%)",
    "kl/rejected": "token KL, rejected (nats, summed over tokens)",
    "loss": "training loss",
}


def _require(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"{what}: missing column(s) {missing}; got {list(df.columns)}")


def _reject_nan(df: pd.DataFrame, columns: list[str], what: str) -> None:
    for col in columns:
        bad = df[col].isna()
        if bad.any():
            raise ValueError(f"{what}: NaN in column {col!r} at row {df.index[bad.to_numpy().argmax()]!r}")


def _colors() -> list[str]:
    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, numbers.Real) else str(value)


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no data: {what}", ha="center", va="center", transform=ax.transAxes, color="gray")


def frontier_figure(
    points_df: pd.DataFrame,
    front_df: pd.DataFrame,
    x: str = "kl",
    y: str = "reward",
    group: str = "method",
    reference: dict[str, float] | None = None,
) -> Figure:
    """Scatter of all (x, y) points per ``group`` value, each with its Pareto front as a line (Figure 2).

    Args:
        points_df: one row per evaluated point; columns ``group``, ``x`` (sequence KL, nats), ``y`` (reward).
        front_df: the fronts, e.g. ``pareto.pareto_front(points_df, x, y, group=group)``; same columns. When it
            has ``<x>_low``/``<x>_high`` and ``<y>_low``/``<y>_high`` (confidence bounds), the front points
            carry them as error bars.
        reference: the step-0 point (keys ``x``, ``y`` and optionally their ``_low``/``_high`` bounds), drawn
            as a black star with its error bar and labelled "reference (step 0)".

    Returns:
        A Figure with one Axes holding, per group value in order of first appearance, a PathCollection
        labelled with the value (offsets = its points in input order) and a Line2D labelled
        ``"<value> front"`` (data = its front sorted by x), both in the same colour.
    """
    for df, name in ((points_df, "points_df"), (front_df, "front_df")):
        _require(df, [group, x, y], f"frontier_figure {name}")
        _reject_nan(df, [group, x, y], f"frontier_figure {name}")
    fig = new_figure()
    ax = fig.add_subplot()
    names = list(dict.fromkeys(points_df[group].tolist() + front_df[group].tolist()))
    colors = _colors()
    for i, name in enumerate(names):
        color = colors[i % len(colors)]
        pts = points_df[points_df[group] == name]
        if len(pts):
            ax.scatter(pts[x].to_numpy(), pts[y].to_numpy(), s=18, alpha=0.45, color=color, label=str(name))
        front = front_df[front_df[group] == name].sort_values(x, kind="stable")
        if len(front):
            ax.plot(
                front[x].to_numpy(),
                front[y].to_numpy(),
                marker="o",
                ms=4,
                lw=1.8,
                color=color,
                label=f"{name} front",
            )
            _error_bars(ax, front, x, y, color)
    if reference is not None:
        ax.scatter([reference[x]], [reference[y]], marker="*", s=160, color="black", zorder=5, label="reference (step 0)")
        _error_bars(ax, pd.DataFrame([reference]), x, y, "black")
    if names or reference is not None:
        ax.legend(fontsize="small", ncols=2)
    else:
        _no_data(ax, "no points")
    ax.set_xlabel("sequence KL to reference (nats)" if x == "kl" else x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} vs {x} frontier")
    ax.grid(alpha=0.3)
    return fig


def _error_bars(ax: Axes, df: pd.DataFrame, x: str, y: str, color: str) -> None:
    """Confidence bounds ``<col>_low``/``<col>_high`` as error bars, where ``df`` has them."""
    bounds = [f"{c}_{s}" for c in (y, x) for s in ("low", "high")]
    if not set(bounds) <= set(df.columns):
        return
    xs, ys = df[x].to_numpy(dtype=float), df[y].to_numpy(dtype=float)
    # A percentile interval can (rarely) exclude its own mean: clip, since error bars cannot be negative.
    yerr = np.maximum(0.0, [ys - df[f"{y}_low"].to_numpy(dtype=float), df[f"{y}_high"].to_numpy(dtype=float) - ys])
    xerr = np.maximum(0.0, [xs - df[f"{x}_low"].to_numpy(dtype=float), df[f"{x}_high"].to_numpy(dtype=float) - xs])
    ax.errorbar(xs, ys, yerr=yerr, xerr=xerr, fmt="none", ecolor=color, elinewidth=1.0, capsize=2, alpha=0.8)


def plot_frontier(points_df: pd.DataFrame, front_df: pd.DataFrame, path: str | Path, **kwargs: object) -> Path:
    """Write :func:`frontier_figure` as a PNG at ``path``; keyword args go to it (x, y, group, reference)."""
    return save_png(frontier_figure(points_df, front_df, **kwargs), path)


def sparsity_figure(points_df: pd.DataFrame, panels: dict[str, str] | None = None) -> Figure:
    """Per-step curves of mask sparsity and token KL, one line per (method, beta) (Figure 3).

    Args:
        points_df: per-step training metrics; columns ``method``, ``beta``, ``step`` and, optionally, the
            ``panels`` columns (default :data:`SPARSITY_PANELS`: sparsity in %, KL in nats). Rows whose panel
            value is NaN (e.g. a method without masks) are left out of that panel; several rows at the same
            (method, beta, step), e.g. seeds, are averaged, and with a ``seed`` column of several seeds each
            line has a band from the lowest to the highest seed's value at each step.
        panels: column -> axis label; one Axes per entry, in order.

    Returns:
        A Figure with one Axes per panel. Each Axes has one Line2D per (method, beta), labelled
        ``"beta=<beta>"`` (``"<method> beta=<beta>"`` when the panel has several methods), data = (step,
        mean value) sorted by step, and, over several seeds, one PolyCollection (the band) per line. A panel
        whose column is missing or all-NaN has no lines and a "no data" note.
    """
    panels = SPARSITY_PANELS if panels is None else panels
    _require(points_df, ["method", "beta", "step"], "sparsity_figure points_df")
    _reject_nan(points_df, ["method", "beta", "step"], "sparsity_figure points_df")
    fig = new_figure(ncols=len(panels), width=4.5)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colors = _colors()
    for ax, (col, label) in zip(axes, panels.items(), strict=True):
        ax.set_title(col)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        rows = points_df.dropna(subset=[col]) if col in points_df.columns else points_df.iloc[:0]
        if rows.empty:
            _no_data(ax, f"column {col!r} missing" if col not in points_df.columns else f"{col!r} is all NaN")
            continue
        several_methods = rows["method"].nunique() > 1
        stats = rows.groupby(["method", "beta", "step"], sort=True)[col].agg(["mean", "min", "max"])
        seeds = rows.groupby(["method", "beta"])["seed"].nunique() if "seed" in rows else None
        means = stats.rename(columns={"mean": col}).reset_index()
        for i, ((method, beta), line) in enumerate(means.groupby(["method", "beta"], sort=True)):
            name = f"{method} beta={_fmt(beta)}" if several_methods else f"beta={_fmt(beta)}"
            if seeds is not None and seeds[(method, beta)] > 1:
                name += f" ({seeds[(method, beta)]} seeds, min-max)"
                ax.fill_between(line["step"].to_numpy(), line["min"].to_numpy(), line["max"].to_numpy(),
                                color=colors[i % len(colors)], alpha=0.2, lw=0)
            ax.plot(
                line["step"].to_numpy(),
                line[col].to_numpy(),
                lw=1.5,
                color=colors[i % len(colors)],
                label=name,
            )
        ax.legend(fontsize="small")
    return fig


def plot_sparsity(points_df: pd.DataFrame, path: str | Path, panels: dict[str, str] | None = None) -> Path:
    """Write :func:`sparsity_figure` as a PNG at ``path``."""
    return save_png(sparsity_figure(points_df, panels), path)
