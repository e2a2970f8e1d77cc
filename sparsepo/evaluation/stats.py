"""Bootstrap statistics for evaluation results (paper Appendix B.3).

Items are the unit of resampling: one value per evaluation item (a prompt, a document, a
problem), already averaged over that item's samples. Resampling items, not samples, keeps the
samples of one prompt together, since they are not independent of each other.

* :func:`bootstrap_ci` -- percentile bootstrap confidence interval of a statistic (default: mean).
* :func:`paired_bootstrap_test` -- paired bootstrap test between two systems scored on the same
  items (Davison & Hinkley, 1997; Koehn, 2004). Its ``p_value`` is the bootstrap probability that
  system A is *not* better than system B.
* :func:`significance_table` -- the paired test for every metric and setting two systems share,
  from an item table (see :mod:`sparsepo.evaluation.report`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: ``statistic(values, axis=-1)`` reduces the last axis; ``np.mean`` and ``np.median`` qualify.
Statistic = Callable[..., np.ndarray]

# Resampled index matrices are built this many rows at a time, bounding memory at
# _CHUNK * n_items indices whatever n_resamples is.
_CHUNK = 1000


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate with its ``1 - alpha`` percentile bootstrap interval over ``n`` items."""

    value: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedTestResult:
    """Paired bootstrap comparison of system A against system B on ``n`` shared items.

    ``delta`` is statistic(A) - statistic(B), oriented so that a positive delta means A is better
    (for lower-is-better metrics the sign is flipped). ``ci_low``/``ci_high`` bound that delta.
    ``p_value`` is the fraction of resamples where A is not better than B (delta <= 0): small values
    mean A is significantly better; identical systems give 1.0.
    """

    delta: float
    p_value: float
    ci_low: float
    ci_high: float
    n: int


def _as_items(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of per-item values, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: no items to bootstrap")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name}: item {bad} is not finite ({arr[bad]})")
    return arr


def _check(n_resamples: int, alpha: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _resampled_statistics(
    arrays: tuple[np.ndarray, ...], statistic: Statistic, n_resamples: int, seed: int
) -> list[np.ndarray]:
    """Statistic of each array over the *same* resampled item indices; each result has shape (n_resamples,)."""
    n = arrays[0].size
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[] for _ in arrays]
    for start in range(0, n_resamples, _CHUNK):
        rows = min(_CHUNK, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n))
        for k, arr in enumerate(arrays):
            out[k].append(np.asarray(statistic(arr[idx], axis=-1), dtype=float))
    return [np.concatenate(parts) for parts in out]


def bootstrap_ci(
    values: object,
    *,
    statistic: Statistic = np.mean,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile bootstrap CI of ``statistic`` over per-item ``values`` (shape (n_items,)).

    The interval is the [alpha/2, 1 - alpha/2] quantile range of the statistic over ``n_resamples``
    resamples of the items with replacement; ``value`` is the statistic of the original items.
    """
    _check(n_resamples, alpha)
    arr = _as_items(values, "values")
    (stats,) = _resampled_statistics((arr,), statistic, n_resamples, seed)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return ConfidenceInterval(float(statistic(arr, axis=-1)), float(low), float(high), int(arr.size))


def seeds_prompts_bootstrap_ci(
    values: object, *, n_resamples: int = 1000, alpha: float = 0.05, seed: int = 0
) -> ConfidenceInterval:
    """Percentile CI of the mean of ``values`` (shape (n_seeds, n_prompts)) by a two-level bootstrap: each
    resample draws seeds with replacement and, independently, prompts with replacement (the same prompts for
    every drawn seed, since every seed is evaluated on the same prompts), and averages the drawn cells."""
    _check(n_resamples, alpha)
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2 or not arr.size or not np.isfinite(arr).all():
        raise ValueError(f"values must be a finite (n_seeds, n_prompts) array, got shape {arr.shape}")
    s, n = arr.shape
    rng = np.random.default_rng(seed)
    si, pi = rng.integers(0, s, size=(n_resamples, s)), rng.integers(0, n, size=(n_resamples, n))
    stats = np.array([arr[np.ix_(si[r], pi[r])].mean() for r in range(n_resamples)])
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return ConfidenceInterval(float(arr.mean()), float(low), float(high), int(n))


def paired_bootstrap_test(
    a: object,
    b: object,
    *,
    higher_is_better: bool = True,
    statistic: Statistic = np.mean,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PairedTestResult:
    """Paired bootstrap test that system A is better than system B.

    ``a[i]`` and ``b[i]`` are the two systems' values on the same item i (shape (n_items,) each).
    Each resample draws items with replacement and recomputes statistic(A) - statistic(B) on the
    *same* items, so per-item difficulty cancels out. Returns the observed delta, its percentile CI
    and p = P*(delta* <= 0), the probability under resampling that A is not better than B.
    """
    _check(n_resamples, alpha)
    arr_a, arr_b = _as_items(a, "a"), _as_items(b, "b")
    if arr_a.size != arr_b.size:
        raise ValueError(f"paired test needs the same items: a has {arr_a.size}, b has {arr_b.size}")
    sign = 1.0 if higher_is_better else -1.0
    stat_a, stat_b = _resampled_statistics((arr_a, arr_b), statistic, n_resamples, seed)
    deltas = sign * (stat_a - stat_b)
    observed = sign * float(statistic(arr_a, axis=-1) - statistic(arr_b, axis=-1))
    low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
    p_value = float(np.mean(deltas <= 0.0))
    return PairedTestResult(observed, p_value, float(low), float(high), int(arr_a.size))


def two_sided(p_not_better: float) -> float:
    """A paired test's two-sided p-value from its one-sided ``p`` = P*(delta* <= 0): 2 min(p, 1 - p), at most 1."""
    return min(1.0, 2.0 * min(p_not_better, 1.0 - p_not_better))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control over the tests), in the input order.

    Sorted ascending, the i-th smallest (i from 0) becomes max over j <= i of min(1, (m - j) p_(j)), m tests.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        out[i] = running
    return out


def _system_items(items: pd.DataFrame, system: str, keys: list[str]) -> pd.DataFrame:
    """``system``'s rows of an item table; an error when it has none or several values for one item."""
    frame = items[items["system"] == system]
    if frame.empty:
        raise ValueError(f"significance_table: system {system!r} has no items")
    dup = frame.duplicated(keys + ["item"])
    if dup.any():
        row = frame[dup].iloc[0]
        raise ValueError(
            f"significance_table: system {system!r} has several values for item {row['item']!r} "
            f"(metric {row['metric']!r}, setting {row['setting']!r}); expected one per item"
        )
    return frame


def significance_table(
    items: pd.DataFrame,
    system_a: str,
    system_b: str,
    *,
    higher_is_better: Mapping[str, bool] | None = None,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired bootstrap test of ``system_a`` vs ``system_b`` for each (suite, metric, setting) both have.

    ``items`` has the item-table columns (system, suite, metric, setting, item, value). Items are
    matched by their ``item`` key; items only one system has are dropped (their count is reported
    in ``n_unpaired``). ``higher_is_better`` maps metric names to their orientation (default True).
    Returns columns suite, metric, setting, system_a, system_b, delta, ci_low, ci_high, p_value, n,
    n_unpaired.
    """
    orient = dict(higher_is_better or {})
    keys = ["suite", "metric", "setting"]
    a, b = (_system_items(items, name, keys) for name in (system_a, system_b))
    rows = []
    for key, group_a in a.groupby(keys, sort=True):
        group_b = b[(b[keys] == pd.Series(key, index=keys)).all(axis=1)]
        merged = group_a.merge(group_b, on="item", suffixes=("_a", "_b"))
        if merged.empty:
            continue
        res = paired_bootstrap_test(merged["value_a"].to_numpy(), merged["value_b"].to_numpy(),
                                    higher_is_better=orient.get(key[1], True), n_resamples=n_resamples,
                                    alpha=alpha, seed=seed)
        rows.append({**dict(zip(keys, key, strict=True)), "system_a": system_a, "system_b": system_b,
                     "delta": res.delta, "ci_low": res.ci_low, "ci_high": res.ci_high, "p_value": res.p_value,
                     "n": res.n, "n_unpaired": len(group_a) + len(group_b) - 2 * len(merged)})
    columns = keys + ["system_a", "system_b", "delta", "ci_low", "ci_high", "p_value", "n", "n_unpaired"]
    return pd.DataFrame(rows, columns=columns)
