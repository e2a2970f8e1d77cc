"""95% bootstrap intervals of the Table 1 scores (:mod:`sparsepo.evaluation.openllm_scores`), over documents.

lm-eval's own standard errors are off (``bootstrap_iters=0`` keeps evaluation fast) and would not carry through
the leaderboard's floored normalisation anyway, so the interval is computed from the logged samples: every
replicate resamples the documents of each evaluated subtask with replacement (stratified: a subtask keeps its
size), recomputes each subtask's raw score, and scores the replicate by the same rules as the point estimate
(one shared baseline: normalise the size-weighted mean over subtasks; mixed baselines: average the normalised
subtask scores; then the suite's ``Average``). A document's value is its metric in the samples; list-valued
metrics (IFEval's instruction level: one entry per instruction) count each entry, as lm-eval's mean does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sparsepo.evaluation.openllm_scores import (
    AVERAGE_COLUMN,
    Average,
    TaskSpec,
    get_suite,
    leaf_tasks,
    random_baseline,
    suite_average,
)


def document_values(results: Mapping[str, Any], task: str, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray]:
    """(numerators, denominators), one per logged document of ``task`` for ``spec``'s metric and filter: a
    scalar metric gives (value, 1), a list-valued one (sum, length). Raises when the samples are missing."""
    rows = [s for s in results.get("samples", {}).get(task, []) if s.get("filter", "none") == spec.filter]
    if not rows:
        raise ValueError(f"task {task!r}: no logged samples for filter {spec.filter!r}; evaluate with "
                         "log_samples=True and load the results with their samples_*.jsonl files")
    num, den = [], []
    for i, sample in enumerate(rows):
        if spec.metric not in sample:
            raise KeyError(f"task {task!r}, sample {i}: no metric {spec.metric!r}")
        value = sample[spec.metric]
        values = [float(v) for v in value] if isinstance(value, list) else [float(value)]
        num.append(sum(values))
        den.append(len(values))
    return np.asarray(num), np.asarray(den, dtype=float)


def _replicates(num: np.ndarray, den: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Raw score of ``n_resamples`` resamples of the documents, shape (n_resamples,)."""
    idx = rng.integers(0, len(num), size=(n_resamples, len(num)))
    return num[idx].sum(axis=1) / den[idx].sum(axis=1)


def _normalise(raw: np.ndarray, baseline: float) -> np.ndarray:
    return np.maximum(0.0, (raw - baseline) / (1.0 - baseline)) * 100.0


def column_replicates(results: Mapping[str, Any], spec: TaskSpec, n_resamples: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Normalised score of one column in each bootstrap replicate, shape (n_resamples,)."""
    leaves = leaf_tasks(results, spec.task)
    raws, sizes, baselines = [], [], []
    for leaf in leaves:
        num, den = document_values(results, leaf, spec)
        raws.append(_replicates(num, den, n_resamples, rng))
        sizes.append(den.sum())
        baselines.append(random_baseline(results, leaf))
    if len(set(baselines)) == 1:
        pooled = sum(r * s for r, s in zip(raws, sizes, strict=True)) / sum(sizes)
        return _normalise(pooled, baselines[0])
    return np.mean([_normalise(r, b) for r, b in zip(raws, baselines, strict=True)], axis=0)


def column_intervals(results: Mapping[str, Any], suite: str | Sequence[TaskSpec] = "open_llm_v2",
                     average: Average = "paper", n_resamples: int = 1000, alpha: float = 0.05,
                     seed: int = 0) -> dict[str, tuple[float, float]]:
    """``{column: (low, high)}``, the percentile bootstrap interval of every column's normalised score (0-100)
    and of ``"Average"``, at level ``1 - alpha``; seeded, so a rerun gives the same interval."""
    specs = get_suite(suite)
    rng = np.random.default_rng(seed)
    reps = {s.column: column_replicates(results, s, n_resamples, rng) for s in specs}
    reps[AVERAGE_COLUMN] = suite_average(reps, specs, average)
    return {c: tuple(float(q) for q in np.quantile(r, [alpha / 2, 1 - alpha / 2])) for c, r in reps.items()}
