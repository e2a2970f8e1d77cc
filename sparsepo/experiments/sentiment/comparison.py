"""What the frontier shows, with its uncertainty: gain over the reference, methods at matched KL, front areas.

All tests are paired bootstrap tests (:func:`sparsepo.eval.stats.paired_bootstrap_test`) on per-prompt values:
every point is evaluated on the same held-out prompts with the same sampling seed, so prompt difficulty cancels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sparsepo.eval.stats import paired_bootstrap_test
from sparsepo.experiments.sentiment.points import REFERENCE
from sparsepo.pareto import best_within, front_area

BASELINE = "dpo"
COMPARISON_COLUMNS = ["budget", "method", "beta", "step", "kl", "reward", "reward_low", "reward_high", "vs",
                      "vs_beta", "vs_step", "vs_reward", "delta", "delta_low", "delta_high", "p_value"]


def prompt_values(per_prompt: pd.DataFrame, point: dict[str, Any] | pd.Series, metric: str = "reward") -> np.ndarray:
    """The per-prompt ``metric`` of one point (matched by method, beta, step), in prompt order; shape (n_prompts,)."""
    rows = per_prompt[(per_prompt["method"] == point["method"]) & (per_prompt["step"] == point["step"])]
    beta = point["beta"]
    rows = rows[rows["beta"].isna()] if pd.isna(beta) else rows[rows["beta"] == beta]
    if rows.empty:
        raise KeyError(f"no per-prompt values for {point['method']} beta={beta} step={point['step']}")
    return rows.sort_values("prompt_id")[metric].to_numpy(dtype=float)


def kl_budgets(points: pd.DataFrame, budgets: tuple[float, ...] = ()) -> list[float]:
    """``budgets`` if given, else the 1/3 and 2/3 quantiles of the trained points' KL (two significant digits) and
    its maximum (every point)."""
    if budgets:
        return sorted(float(b) for b in budgets)
    kl = points.loc[points["method"] != REFERENCE, "kl"]
    if kl.empty:
        return []
    return sorted({float(f"{q:.2g}") for q in np.quantile(kl, [1 / 3, 2 / 3])} | {float(kl.max())})


def gain_over_reference(points: pd.DataFrame, per_prompt: pd.DataFrame, *, n_resamples: int = 1000,
                        seed: int = 0) -> dict[str, Any] | None:
    """The highest-reward trained point against the reference: gain, whether the CIs overlap, paired test."""
    ref = points[points["method"] == REFERENCE]
    trained = points[points["method"] != REFERENCE]
    if ref.empty or trained.empty:
        return None
    ref, best = ref.iloc[0], trained.sort_values(["reward", "kl"], ascending=[False, True]).iloc[0]
    test = paired_bootstrap_test(prompt_values(per_prompt, best), prompt_values(per_prompt, ref),
                                 n_resamples=n_resamples, seed=seed)
    return {"best": best.to_dict(), "reference": ref.to_dict(), "gain": float(best["reward"] - ref["reward"]),
            "cis_overlap": bool(best["reward_low"] <= ref["reward_high"]), "delta_low": test.ci_low,
            "delta_high": test.ci_high, "p_value": test.p_value}


def matched_kl(points: pd.DataFrame, per_prompt: pd.DataFrame, budgets: list[float], *, baseline: str = BASELINE,
               n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per KL budget and method, the best point within the budget, tested against the ``baseline``'s best.

    One row per (budget, method) with ``vs*`` the baseline's point and ``delta`` = reward(method) -
    reward(baseline) with its paired-bootstrap CI and p-value (p: probability that the method is *not* better);
    the baseline's own rows, and methods when the baseline has no point within the budget, have no test.
    """
    trained = points[points["method"] != REFERENCE]
    best = best_within(trained, budgets)
    rows = []
    for _, at in best.groupby("budget", sort=True):
        base = at[at["method"] == baseline]
        for _, row in at.iterrows():
            out = {c: row[c] for c in COMPARISON_COLUMNS if c in row}
            if not base.empty and row["method"] != baseline:
                b = base.iloc[0]
                test = paired_bootstrap_test(prompt_values(per_prompt, row), prompt_values(per_prompt, b),
                                             n_resamples=n_resamples, seed=seed)
                out.update(vs=baseline, vs_beta=b["beta"], vs_step=b["step"], vs_reward=b["reward"],
                           delta=test.delta, delta_low=test.ci_low, delta_high=test.ci_high, p_value=test.p_value)
            rows.append(out)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def front_areas(points: pd.DataFrame, x_max: float) -> pd.DataFrame:
    """Per method, the area of its front above the reference's reward over KL in [0, x_max] (reward x nats)."""
    ref = points[points["method"] == REFERENCE]
    floor = float(ref["reward"].iloc[0]) if not ref.empty else float(points["reward"].min())
    trained = points[points["method"] != REFERENCE]
    rows = [{"method": m, "area": front_area(g, x_max, floor), "kl_max": x_max}
            for m, g in trained.groupby("method", sort=True)]
    return pd.DataFrame(rows, columns=["method", "area", "kl_max"]).sort_values("area", ascending=False)


def verdict(p: float, delta_low: float, delta_high: float) -> str:
    """Words for a paired test of A vs B: ``p`` = P(A not better than B) under resampling, ``delta_low`` /
    ``delta_high`` the 95% CI of A - B. Better or worse only when that whole CI is above or below 0, so the words
    never contradict the interval printed beside them (identical systems have p = 1 but are not worse)."""
    if delta_low > 0:
        return "clearly better (p < 0.01)" if p < 0.01 else f"significantly better (p = {p:.3f}; its 95% CI is above 0)"
    if delta_high < 0:
        return "significantly worse (its 95% CI of the difference is below 0)"
    return f"not distinguishable (p = {p:.2f}: the 95% CI of the difference contains 0)"


def conclusions(gain: dict[str, Any] | None, matched: pd.DataFrame, areas: pd.DataFrame,
                target_gain: float = 0.15) -> list[str]:
    """Plain-words sentences stating what the experiment shows and how sure it is."""
    lines = []
    if gain is None:
        return ["No reference point or no trained point: nothing to compare."]
    b, r = gain["best"], gain["reference"]
    lines.append(
        f"The reference policy scores reward {r['reward']:.3f} [{r['reward_low']:.3f}, {r['reward_high']:.3f}]. "
        f"The best trained point ({b['method']}, beta {b['beta']:g}, step {int(b['step'])}, KL {b['kl']:.2f} nats) "
        f"scores {b['reward']:.3f} [{b['reward_low']:.3f}, {b['reward_high']:.3f}]: a gain of {gain['gain']:+.3f} "
        f"(paired 95% CI [{gain['delta_low']:+.3f}, {gain['delta_high']:+.3f}]), "
        f"{'with overlapping' if gain['cis_overlap'] else 'with non-overlapping'} CIs; against the reference it is "
        f"{verdict(gain['p_value'], gain['delta_low'], gain['delta_high'])}."
    )
    reached = gain["gain"] >= target_gain and not gain["cis_overlap"]
    lines.append(f"Preference alignment {'is' if reached else 'is not'} shown at the +{target_gain:g} level "
                 "(gain >= target with separated CIs).")
    for _, row in matched[matched["vs"].notna()].iterrows():
        lines.append(
            f"At KL <= {row['budget']:.3g} nats, {row['method']}'s best reward {row['reward']:.3f} vs "
            f"{row['vs']}'s {row['vs_reward']:.3f}: difference {row['delta']:+.3f} "
            f"[{row['delta_low']:+.3f}, {row['delta_high']:+.3f}]; {row['method']} is {verdict(row['p_value'], row['delta_low'], row['delta_high'])}."
        )
    if len(areas):
        top = areas.iloc[0]
        lines.append(f"Over KL in [0, {top['kl_max']:.3g}] nats the largest area above the reference's reward is "
                     f"{top['method']}'s ({top['area']:.3f} reward x nats).")
    return lines
