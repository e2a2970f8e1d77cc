"""Pareto fronts of (KL down, reward up) points, as in the paper's reward-vs-KL frontier (Figure 2).

A point p dominates q when p.x <= q.x and p.y >= q.y with at least one strict inequality: lower KL to
the reference model and higher reward are both better. The front is the set of non-dominated points.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points (minimise ``x``, maximise ``y``).

    Args:
        x: shape (n,), the quantity to minimise (e.g. sequence KL in nats).
        y: shape (n,), the quantity to maximise (e.g. reward).

    Returns:
        shape (n,) bool. Exact duplicates do not dominate each other, so of a set of identical points only
        the first (lowest position) is kept; this keeps the front deterministic and free of repeats.
        Callers must reject NaNs first (``pareto_front`` does): NaN compares false with everything.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of equal length, got shapes {x.shape} and {y.shape}")
    # Sweep in order of increasing x; among equal x the highest y comes first, and among exact duplicates
    # the earliest position comes first (lexsort is stable, last key is primary).
    order = np.lexsort((np.arange(len(x)), -y, x))
    mask = np.zeros(len(x), dtype=bool)
    best_y: float | None = None
    for i in order:
        # A point is on the front iff its y beats every point swept before it (all have x <= its x). The
        # first point swept has the least x and the best y among those, so nothing dominates it.
        if best_y is None or y[i] > best_y:
            mask[i] = True
            best_y = y[i]
    return mask


def _check_columns(df: pd.DataFrame, columns: Sequence[str], numeric: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"pareto_front: column(s) {missing} not in DataFrame (columns: {list(df.columns)})")
    for col in numeric:
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise TypeError(f"pareto_front: column {col!r} must be numeric, got dtype {df[col].dtype}")
    for col in columns:
        bad = df[col].isna()
        if bad.any():
            row = df.index[bad.to_numpy().argmax()]
            raise ValueError(
                f"pareto_front: NaN in column {col!r} at row {row!r} ({int(bad.sum())} NaN row(s) in total); "
                "drop or fill failed runs before computing a front"
            )


def pareto_front(
    df: pd.DataFrame,
    x: str = "kl",
    y: str = "reward",
    group: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Non-dominated rows of ``df`` (minimise column ``x``, maximise column ``y``), per group or overall.

    Args:
        df: one row per evaluated point (e.g. one checkpoint of one run), any extra columns are kept.
        x: column to minimise (default ``"kl"``, nats).
        y: column to maximise (default ``"reward"``).
        group: column name(s) to compute one front per group (e.g. ``"method"``); None for one overall front.

    Returns:
        The front rows with their original index and all columns, sorted by group (if any), then by ``x``
        ascending. Within a group, ``x`` and ``y`` are strictly increasing along the front. Of exact
        duplicate (x, y) points only the first in ``df`` order is kept.

    Raises:
        KeyError: a named column is missing. TypeError: ``x``/``y`` not numeric.
        ValueError: a NaN in ``x``, ``y`` or a group column (the message names the row).
    """
    groups = [] if group is None else [group] if isinstance(group, str) else list(group)
    _check_columns(df, [x, y, *groups], numeric=[x, y])
    if df.empty:
        return df.copy()
    xs, ys = df[x].to_numpy(dtype=float), df[y].to_numpy(dtype=float)
    if not groups:
        return df[pareto_mask(xs, ys)].sort_values(x, kind="stable")
    keep = np.zeros(len(df), dtype=bool)
    # .indices gives positions, so a non-unique index cannot mix rows up.
    for pos in df.groupby(groups, sort=False).indices.values():
        keep[pos] = pareto_mask(xs[pos], ys[pos])
    return df[keep].sort_values([*groups, x], kind="stable")


def best_within(df: pd.DataFrame, budgets: Sequence[float], x: str = "kl", y: str = "reward",
                group: str = "method") -> pd.DataFrame:
    """Per group and budget b, the row of highest ``y`` among those with ``x <= b`` (a matched-KL comparison).

    Returns the chosen rows (all columns) with a ``budget`` column added, sorted by budget then group; a group
    with no point within a budget has no row for it. Ties in ``y`` go to the lower ``x``, then the earlier row.
    """
    _check_columns(df, [x, y, group], numeric=[x, y])
    rows = []
    for b in budgets:
        within = df[df[x] <= b]
        for _, g in within.groupby(group, sort=True):
            best = g.sort_values([y, x], ascending=[False, True], kind="stable").iloc[0]
            rows.append({**best.to_dict(), "budget": float(b)})
    return pd.DataFrame(rows, columns=[*df.columns, "budget"])


def front_area(df: pd.DataFrame, x_max: float, y_floor: float, x: str = "kl", y: str = "reward") -> float:
    """Area between the front of ``df`` and the line ``y = y_floor`` over ``0 <= x <= x_max`` (units of x * y).

    The front is read as a step function: at budget t the attainable ``y`` is the best ``y`` of the points with
    ``x <= t``, counted only above ``y_floor`` (e.g. the reference's reward). A larger area is a front that gains
    more reward at every KL budget; two methods compared with the same ``x_max`` and ``y_floor`` are comparable.
    """
    front = pareto_front(df[df[x] <= x_max], x=x, y=y)
    xs = [*front[x].to_numpy(dtype=float), float(x_max)]
    ys = front[y].to_numpy(dtype=float)
    return float(sum(max(0.0, yi - y_floor) * (xs[i + 1] - xs[i]) for i, yi in enumerate(ys)))


def front_value(x: np.ndarray, y: np.ndarray, budget: float) -> float:
    """The most ``y`` attainable at ``x <= budget`` from points (x_i, y_i) and their mixtures: the upper concave
    hull of the points at ``budget``, i.e. the best of every point with x_i <= budget and of every segment
    joining a point below the budget to one above it, read at the budget (a mixture of two policies has at most
    the mixture of their KLs, so the segment is attainable). NaN when no point has x_i <= budget.

    Args: ``x``, ``y`` shape (n,) (e.g. KL in nats and reward, the reference point (0, y_ref) included).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    below, above = x <= budget, x > budget
    if not below.any():
        return float("nan")
    best = float(y[below].max())
    if above.any():
        xb, yb, xa, ya = x[below][:, None], y[below][:, None], x[above][None, :], y[above][None, :]
        best = max(best, float((yb + (ya - yb) * (budget - xb) / (xa - xb)).max()))
    return best
