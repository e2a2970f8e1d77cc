"""The frontier experiment's tables, built on the driver from what the trials reported.

- ``per_prompt``: one row per (evaluation point, prompt): method, beta, step, prompt_id, reward, kl, kl_mc; the
  reference (step-0) point's rows have ``method == REFERENCE`` and no beta;
- ``points``: one row per evaluation point with the means over prompts and their 95% percentile bootstrap CIs
  (``reward_low``/``reward_high``, ``kl_low``/``kl_high``), computed here from the per-prompt values;
- ``train_points``: one row per logged training step (loss, accuracy, token KL, mask sparsity: paper Figure 3).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from sparsepo.eval.sentiment import METRICS, PER_PROMPT_KEY
from sparsepo.eval.stats import bootstrap_ci

POINT_AXIS = "point"
REFERENCE = "reference"
CI_METRICS = ("reward", "kl")
METRIC_COLUMNS = {
    "eval/reward": "reward",
    "eval/kl": "kl",
    "eval/kl_mc": "kl_mc",
    "mask/reward/chosen/sparsity": "sparsity/reward/chosen",
    "mask/kl/chosen/sparsity": "sparsity/kl/chosen",
    "mask/reward/rejected/sparsity": "sparsity/reward/rejected",
    "mask/kl/rejected/sparsity": "sparsity/kl/rejected",
}
TRAIN_COLUMNS = ["method", "beta", "step", "loss", "rewards/accuracy", "rewards/margin", "kl/chosen", "kl/rejected",
                 *(v for v in METRIC_COLUMNS.values() if v.startswith("sparsity")), "grad_norm", "lr", "tokens_per_s"]
POINT_COLUMNS = ["method", "beta", "step", "reward", "reward_low", "reward_high", "kl", "kl_low", "kl_high", "kl_mc",
                 "n_prompts"]


def _label(df: pd.DataFrame, points: dict[str, dict[str, Any]]) -> pd.DataFrame:
    df = df.copy()
    df["method"] = [points[p]["method"] for p in df[POINT_AXIS]]
    df["beta"] = [points[p]["loss.beta"] for p in df[POINT_AXIS]]
    return df.rename(columns=METRIC_COLUMNS)


def per_prompt_rows(method: str, beta: float, step: int, values: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Long rows of one evaluation point's per-prompt values (``values``: metric -> list over prompts)."""
    n = len(values["reward"])
    return [{"method": method, "beta": beta, "step": step, "prompt_id": i, **{m: values[m][i] for m in METRICS}}
            for i in range(n)]


def per_prompt_table(results: pd.DataFrame, points: dict[str, dict[str, Any]],
                     reference: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per-prompt values of every evaluation row of ``results`` (and of the ``reference`` metrics, as step 0)."""
    rows: list[dict[str, Any]] = []
    if reference is not None:
        rows += per_prompt_rows(REFERENCE, float("nan"), 0, json.loads(reference[PER_PROMPT_KEY]))
    if PER_PROMPT_KEY in results:
        evals = _label(results[results[PER_PROMPT_KEY].notna()], points)
        for _, row in evals.iterrows():
            rows += per_prompt_rows(row["method"], row["beta"], int(row["step"]), json.loads(row[PER_PROMPT_KEY]))
    return pd.DataFrame(rows, columns=["method", "beta", "step", "prompt_id", *METRICS])


def points_with_cis(per_prompt: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (method, beta, step): means over prompts and 95% percentile bootstrap CIs of reward and KL.

    Every point is bootstrapped with the same ``seed``; since all points share their prompts, this resamples the
    same prompt sets for every point.
    """
    rows = []
    for (method, beta, step), g in per_prompt.groupby(["method", "beta", "step"], sort=True, dropna=False):
        row: dict[str, Any] = {"method": method, "beta": beta, "step": int(step), "n_prompts": len(g)}
        g = g.sort_values("prompt_id")
        for m in CI_METRICS:
            ci = bootstrap_ci(g[m].to_numpy(), n_resamples=n_resamples, seed=seed)
            row.update({m: ci.value, f"{m}_low": ci.low, f"{m}_high": ci.high})
        row["kl_mc"] = float(g["kl_mc"].mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def points_table(results: pd.DataFrame, points: dict[str, dict[str, Any]], reference: dict[str, Any] | None = None,
                 *, n_resamples: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(points, per_prompt)``: every evaluation point with CIs (reference first), and its per-prompt values.

    ``points`` also carries, where the step was logged, the training metrics of that step (loss, sparsity...).
    """
    per_prompt = per_prompt_table(results, points, reference)
    table = points_with_cis(per_prompt, n_resamples=n_resamples, seed=seed)
    train = train_table(results, points)
    extra = [c for c in train.columns if c not in ("method", "beta", "step")]
    table = table.merge(train, on=["method", "beta", "step"], how="left") if extra and not table.empty else table
    order = table["method"] != REFERENCE
    table = table.assign(_order=order).sort_values(["_order", "method", "beta", "step"]).drop(columns="_order")
    return table.reset_index(drop=True), per_prompt


def train_table(results: pd.DataFrame, points: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per logged training step of every trial (the per-step curves of paper Figures 3 and 7)."""
    if results.empty or "step" not in results or "loss" not in results:
        return pd.DataFrame(columns=["method", "beta", "step"])
    df = _label(results[results["loss"].notna()], points)
    df = df[[c for c in TRAIN_COLUMNS if c in df]]
    df["step"] = df["step"].astype(int)
    return df.sort_values(["method", "beta", "step"]).reset_index(drop=True)


def reference_point(points: pd.DataFrame) -> dict[str, float] | None:
    """The reference row of ``points`` as a dict, or None if the table has none."""
    ref = points[points["method"] == REFERENCE]
    return None if ref.empty else {k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                                   for k, v in ref.iloc[0].to_dict().items()}
