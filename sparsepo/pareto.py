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
