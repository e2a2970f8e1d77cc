"""A finished (or interrupted) sweep's results: the table of every trial's reported steps, the best trial or
Pareto front, and the table written beside the experiment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparsepo.io import fs_uri
from sparsepo.sweeps.trials import trial_params


def results_frame(result_grid: Any) -> pd.DataFrame:
    """One row per (trial, reported step): ``trial_id``, the trial's params (variants also as their config
    keys), its metrics, ``error`` and ``trial_path``.

    Read from each trial's progress (``result.json``). A trial restarted after a crash may have reported a
    step twice; the later report is kept. A trial that failed before reporting keeps one row of params.
    """
    frames = [_trial_frame(result) for result in result_grid]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _trial_frame(result: Any) -> pd.DataFrame:
    """The rows of one trial's ``Result`` in :func:`results_frame`."""
    df = result.metrics_dataframe
    df = pd.DataFrame([{}]) if df is None or df.empty else df.drop(columns=[c for c in df if c.startswith("config/")])
    if "step" in df:
        df = df.drop_duplicates(subset="step", keep="last")
    trial_id = df["trial_id"].iloc[-1] if "trial_id" in df else Path(result.path).name
    head = {"trial_id": trial_id, **trial_params(result.config or _saved_config(result), expand=True)}
    df = df.drop(columns=[c for c in head if c in df]).reset_index(drop=True)
    for i, (k, v) in enumerate(head.items()):
        df.insert(i, k, [v] * len(df))
    df["error"] = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
    df["trial_path"] = fs_uri(result.filesystem, result.path)  # Ray's path inside the filesystem has no scheme
    return df


def _saved_config(result: Any) -> dict[str, Any]:
    """The trial's config from its params.json (a trial that never reported has no config in its metrics)."""
    import json

    try:
        with result.filesystem.open_input_stream(f"{result.path}/params.json") as f:
            return json.loads(f.readall().decode())
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return {}


def best_results(result_grid: Any, metric: str | Sequence[str], mode: str | Sequence[str]) -> list[Any]:
    """The best trial for one metric, or the Pareto front (non-dominated last values) for a list of metrics."""
    if isinstance(metric, str):
        return [result_grid.get_best_result(metric=metric, mode=mode, scope="last")]
    metrics, signs = list(metric), np.array([1.0 if m == "min" else -1.0 for m in mode])
    done = [r for r in result_grid if r.error is None and all(np.isfinite(r.metrics.get(m, np.nan)) for m in metrics)]
    pts = np.array([[r.metrics[m] for m in metrics] for r in done], dtype=float).reshape(len(done), len(metrics)) * signs
    # p is dominated when some q is no worse on every objective and better on one (all minimised after signs).
    dominated = [any(np.all(q <= p) and np.any(q < p) for q in pts) for p in pts]
    return [r for r, d in zip(done, dominated, strict=True) if not d]


def save_results(result_grid: Any, frame: pd.DataFrame | None = None, filename: str = "results.csv") -> str:
    """Write ``frame`` (default: :func:`results_frame`) as CSV into the experiment folder, on whatever storage
    (local or URI) the experiment uses; returns the file's path on that storage."""
    frame = results_frame(result_grid) if frame is None else frame
    target = f"{result_grid.experiment_path.rstrip('/')}/{filename}"
    with result_grid.filesystem.open_output_stream(target) as f:
        f.write(frame.to_csv(index=False).encode())
    return target
