"""The frontier experiment's tables, built on the driver from what the trials reported.

- ``per_prompt``: one row per (evaluation point, prompt): method, beta, step, prompt_id, reward, kl, kl_mc; the
  reference (step-0) point's rows have ``method == REFERENCE`` and no beta. With several training seeds a point's
  per-prompt value is its mean over the seeds (``per_prompt_by_seed`` keeps each seed's);
- ``points``: one row per evaluation point with the means over prompts and their 95% percentile bootstrap CIs
  (``reward_low``/``reward_high``, ``kl_low``/``kl_high``), computed here from the per-prompt values;
  ``points_by_seed`` the same per training seed;
- ``train_points``: one row per logged training step and seed (loss, accuracy, token KL, mask sparsity: paper
  Figure 3).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from sparsepo.evaluation.sentiment import METRICS, PER_PROMPT_KEY
from sparsepo.evaluation.stats import bootstrap_ci, seeds_prompts_bootstrap_ci

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
TRAIN_COLUMNS = ["method", "beta", "seed", "step", "loss", "rewards/accuracy", "rewards/margin", "kl/chosen", "kl/rejected",
                 *(v for v in METRIC_COLUMNS.values() if v.startswith("sparsity")), "grad_norm", "grad_norm/policy",
                 "grad_norm/masks", "lr", "tokens_per_s"]
POINT_COLUMNS = ["method", "beta", "step", "reward", "reward_low", "reward_high", "kl", "kl_low", "kl_high", "kl_mc",
                 "n_prompts", "n_seeds"]


def _label(df: pd.DataFrame, points: dict[str, dict[str, Any]]) -> pd.DataFrame:
    df = df.copy()
    df["method"] = [points[p]["method"] for p in df[POINT_AXIS]]
    df["beta"] = [points[p]["loss.beta"] for p in df[POINT_AXIS]]
    df["seed"] = [int(points[p].get("run.seed", 0)) for p in df[POINT_AXIS]]
    return df.rename(columns=METRIC_COLUMNS)


def per_prompt_rows(method: str, beta: float, step: int, values: dict[str, list[float]],
                    seed: int = 0) -> list[dict[str, Any]]:
    """Long rows of one evaluation point's per-prompt values (``values``: metric -> list over prompts)."""
    n = len(values["reward"])
    return [{"method": method, "beta": beta, "seed": seed, "step": step, "prompt_id": i,
             **{m: values[m][i] for m in METRICS}} for i in range(n)]


def per_prompt_table(results: pd.DataFrame, points: dict[str, dict[str, Any]],
                     reference: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per-prompt values of every evaluation row of ``results`` (and of the ``reference`` metrics, as step 0)."""
    rows: list[dict[str, Any]] = []
    if reference is not None:
        rows += per_prompt_rows(REFERENCE, float("nan"), 0, json.loads(reference[PER_PROMPT_KEY]))
    if PER_PROMPT_KEY in results:
        evals = _label(results[results[PER_PROMPT_KEY].notna()], points)
        for _, row in evals.iterrows():
            rows += per_prompt_rows(row["method"], row["beta"], int(row["step"]), json.loads(row[PER_PROMPT_KEY]),
                                    int(row["seed"]))
    return pd.DataFrame(rows, columns=["method", "beta", "seed", "step", "prompt_id", *METRICS])


def mean_over_seeds(by_seed: pd.DataFrame) -> pd.DataFrame:
    """Per (point, prompt), the mean over the training seeds of each metric, with ``n_seeds``. The reference
    point, untrained, has one seed."""
    keys = ["method", "beta", "step", "prompt_id"]
    g = by_seed.groupby(keys, sort=True, dropna=False)
    out = g[list(METRICS)].mean().join(g["seed"].nunique().rename("n_seeds")).reset_index()
    return out[[*keys, *METRICS, "n_seeds"]]


def points_with_cis(per_prompt: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0,
                    by_seed: bool = False) -> pd.DataFrame:
    """One row per (method, beta, step) (and training seed, with ``by_seed``): means over prompts and 95%
    percentile bootstrap CIs of reward and KL.

    Every point is bootstrapped with the same ``seed``; since all points share their prompts, this resamples the
    same prompt sets for every point.
    """
    rows = []
    keys = ["method", "beta", "seed", "step"] if by_seed else ["method", "beta", "step"]
    for key, g in per_prompt.groupby(keys, sort=True, dropna=False):
        row: dict[str, Any] = {**dict(zip(keys, key, strict=True)), "n_prompts": len(g)}
        row["step"] = int(row["step"])
        row["n_seeds"] = 1 if by_seed else int(g["n_seeds"].max()) if "n_seeds" in g else 1
        g = g.sort_values("prompt_id")
        for m in CI_METRICS:
            ci = bootstrap_ci(g[m].to_numpy(), n_resamples=n_resamples, seed=seed)
            row.update({m: ci.value, f"{m}_low": ci.low, f"{m}_high": ci.high})
        row["kl_mc"] = float(g["kl_mc"].mean())
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, *(c for c in POINT_COLUMNS if c not in keys)])


def points_table(results: pd.DataFrame, points: dict[str, dict[str, Any]], reference: dict[str, Any] | None = None,
                 *, n_resamples: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(points, per_prompt)``: every evaluation point with CIs (reference first), and its per-prompt values,
    each averaged over the training seeds (:func:`points_by_seed` keeps them apart).

    ``points`` also carries, where the step was logged, the training metrics of that step (loss, sparsity...),
    averaged over the seeds.
    """
    by_seed = per_prompt_table(results, points, reference)
    per_prompt = mean_over_seeds(by_seed)
    table = seed_cis(points_with_cis(per_prompt, n_resamples=n_resamples, seed=seed), by_seed,
                     n_resamples=n_resamples, seed=seed)
    train = train_table(results, points)
    extra = [c for c in train.columns if c not in ("method", "beta", "seed", "step")]
    if extra and not table.empty:
        train = train.groupby(["method", "beta", "step"], sort=True)[extra].mean().reset_index()
        table = table.merge(train, on=["method", "beta", "step"], how="left")
    return _reference_first(table), per_prompt


def seed_cis(table: pd.DataFrame, by_seed: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Points trained with several seeds get CIs from a bootstrap over seeds and prompts
    (:func:`sparsepo.evaluation.stats.seeds_prompts_bootstrap_ci`) in place of the one over prompts of the seed means."""
    table = table.copy()
    for i, row in table[table["n_seeds"] > 1].iterrows():
        g = by_seed[(by_seed["method"] == row["method"]) & (by_seed["beta"] == row["beta"])
                    & (by_seed["step"] == row["step"])]
        for m in CI_METRICS:
            grid = g.pivot(index="seed", columns="prompt_id", values=m).dropna(axis=1).to_numpy()
            ci = seeds_prompts_bootstrap_ci(grid, n_resamples=n_resamples, seed=seed)
            table.loc[i, [f"{m}_low", f"{m}_high"]] = [ci.low, ci.high]
    return table


def points_by_seed(results: pd.DataFrame, points: dict[str, dict[str, Any]], reference: dict[str, Any] | None = None,
                   *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every evaluation point of every training seed with its CIs over prompts (reference first)."""
    per_prompt = per_prompt_table(results, points, reference)
    table = points_with_cis(per_prompt, n_resamples=n_resamples, seed=seed, by_seed=True)
    return _reference_first(table.sort_values(["method", "beta", "seed", "step"]))


def _reference_first(table: pd.DataFrame) -> pd.DataFrame:
    order = table["method"] != REFERENCE
    return table.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def train_table(results: pd.DataFrame, points: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per logged training step of every trial (the per-step curves of paper Figures 3 and 7)."""
    if results.empty or "step" not in results or "loss" not in results:
        return pd.DataFrame(columns=["method", "beta", "step"])
    df = _label(results[results["loss"].notna()], points)
    df = df[[c for c in TRAIN_COLUMNS if c in df]]
    df["step"] = df["step"].astype(int)
    return df.sort_values(["method", "beta", "seed", "step"]).reset_index(drop=True)


def reference_point(points: pd.DataFrame) -> dict[str, float] | None:
    """The reference row of ``points`` as a dict, or None if the table has none."""
    ref = points[points["method"] == REFERENCE]
    return None if ref.empty else {k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                                   for k, v in ref.iloc[0].to_dict().items()}
