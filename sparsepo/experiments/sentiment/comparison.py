"""What the frontier shows, with its uncertainty: gain over the reference, methods at matched KL, front areas.

All tests are paired bootstrap tests (:func:`sparsepo.evaluation.stats.paired_bootstrap_test`) on per-prompt values:
every point is evaluated on the same held-out prompts with the same sampling seed, so prompt difficulty cancels.

Verdicts are selection-free when given a :class:`PromptSplit`: every choice (the best point, each method's best
within a KL budget) is made on the selection prompts, and every number and test of a verdict is computed on the
disjoint confirmation prompts, so picking the luckiest of K points does not inflate its gain. :func:`adjust` then
applies Holm's correction over all the verdicts a report makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sparsepo.evaluation.stats import holm, paired_bootstrap_test, two_sided
from sparsepo.experiments.sentiment.pareto import best_within, front_area, front_value
from sparsepo.experiments.sentiment.points import REFERENCE, points_with_cis

BASELINE = "dpo"
COMPARISON_COLUMNS = ["budget", "method", "beta", "step", "kl", "reward", "reward_low", "reward_high", "vs",
                      "vs_beta", "vs_step", "vs_reward", "delta", "delta_low", "delta_high", "p_value", "p_holm", "seeds_agree"]
ALPHA = 0.05  # family-wise error rate of a report's verdicts (Holm), two-sided


@dataclass(frozen=True)
class PromptSplit:
    """Disjoint prompt ids: ``selection`` (choices are made on them) and ``confirmation`` (verdicts are)."""

    selection: np.ndarray
    confirmation: np.ndarray


def split_prompts(per_prompt: pd.DataFrame, seed: int = 0) -> PromptSplit:
    """Half of the evaluation prompts (a seeded permutation of their ids) select, the other half confirm."""
    ids = np.sort(per_prompt["prompt_id"].unique())
    order = np.random.default_rng(seed).permutation(ids)
    half = len(order) // 2
    return PromptSplit(np.sort(order[:half]), np.sort(order[half:]))


def points_on(per_prompt: pd.DataFrame, ids: np.ndarray, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every point's means and CIs over the prompts ``ids`` only."""
    return points_with_cis(per_prompt[per_prompt["prompt_id"].isin(ids)], n_resamples=n_resamples, seed=seed)


def _views(points: pd.DataFrame, per_prompt: pd.DataFrame, split: PromptSplit | None, n_resamples: int,
           seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray | None]:
    """(points to choose on, points to report, prompt ids of the tests): all prompts, or the split's two halves."""
    if split is None:
        return points, points, None
    return (points_on(per_prompt, split.selection, n_resamples=n_resamples, seed=seed),
            points_on(per_prompt, split.confirmation, n_resamples=n_resamples, seed=seed), split.confirmation)


def _rows_of(table: pd.DataFrame, point: pd.Series | dict[str, Any]) -> pd.DataFrame:
    """The rows of ``table`` that belong to ``point`` (same method, beta, step; the reference has no beta)."""
    rows = table[(table["method"] == point["method"]) & (table["step"] == point["step"])]
    return rows[rows["beta"].isna()] if pd.isna(point["beta"]) else rows[rows["beta"] == point["beta"]]


def _same_point(table: pd.DataFrame, point: pd.Series | dict[str, Any]) -> pd.Series:
    return _rows_of(table, point).iloc[0]


def prompt_values(per_prompt: pd.DataFrame, point: dict[str, Any] | pd.Series, metric: str = "reward",
                  ids: np.ndarray | None = None) -> np.ndarray:
    """The per-prompt ``metric`` of one point (matched by method, beta, step), in prompt order; shape (n_prompts,)
    (only the prompts ``ids``, if given)."""
    rows = _rows_of(per_prompt, point)
    if ids is not None:
        rows = rows[rows["prompt_id"].isin(ids)]
    beta = point["beta"]
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


def seed_deltas(by_seed: pd.DataFrame | None, a: pd.Series | dict[str, Any], b: pd.Series | dict[str, Any],
                ids: np.ndarray | None = None) -> list[float]:
    """Per training seed of point ``a``, its mean reward minus point ``b``'s (the same seed's where ``b`` has it,
    else ``b``'s only one: the reference is untrained), over the prompts ``ids``. Empty without seed data."""
    if by_seed is None or "seed" not in by_seed:
        return []

    def of(point: pd.Series | dict[str, Any]) -> pd.DataFrame:
        rows = _rows_of(by_seed, point)
        rows = rows if ids is None else rows[rows["prompt_id"].isin(ids)]
        return rows.groupby("seed")["reward"].mean()

    ra, rb = of(a), of(b)
    if ra.empty or rb.empty:
        return []
    return [float(ra[s] - (rb[s] if s in rb.index else rb.iloc[0])) for s in ra.index]


def agreement(deltas: list[float], delta: float) -> str:
    """``"k/n"``: on how many of the ``n`` seeds the difference has the sign of the pooled one (``""``: no seeds)."""
    return f"{sum((d > 0) == (delta > 0) for d in deltas)}/{len(deltas)}" if deltas else ""


def gain_over_reference(points: pd.DataFrame, per_prompt: pd.DataFrame, *, n_resamples: int = 1000,
                        seed: int = 0, split: PromptSplit | None = None,
                        by_seed: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """The highest-reward trained point against the reference: gain, whether the CIs overlap, paired test.
    With ``split``, the point is chosen on its selection prompts and everything else is of its confirmation ones."""
    choose, report, ids = _views(points, per_prompt, split, n_resamples, seed)
    ref = report[report["method"] == REFERENCE]
    trained = choose[choose["method"] != REFERENCE]
    if ref.empty or trained.empty:
        return None
    ref = ref.iloc[0]
    best = _same_point(report, trained.sort_values(["reward", "kl"], ascending=[False, True]).iloc[0])
    test = paired_bootstrap_test(prompt_values(per_prompt, best, ids=ids), prompt_values(per_prompt, ref, ids=ids),
                                 n_resamples=n_resamples, seed=seed)
    overlap = bool(best["reward_low"] <= ref["reward_high"] and ref["reward_low"] <= best["reward_high"])
    return {"best": best.to_dict(), "reference": ref.to_dict(), "gain": float(best["reward"] - ref["reward"]),
            "cis_overlap": overlap, "delta_low": test.ci_low, "delta_high": test.ci_high, "p_value": test.p_value,
            "p_holm": two_sided(test.p_value), "n_prompts": int(best["n_prompts"]),
            "seeds_agree": agreement(seed_deltas(by_seed, best, ref, ids), float(best["reward"] - ref["reward"]))}


def matched_kl(points: pd.DataFrame, per_prompt: pd.DataFrame, budgets: list[float], *, baseline: str = BASELINE,
               n_resamples: int = 1000, seed: int = 0, split: PromptSplit | None = None,
               by_seed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per KL budget and method, the best point within the budget, tested against the ``baseline``'s best.

    One row per (budget, method) with ``vs*`` the baseline's point and ``delta`` = reward(method) -
    reward(baseline) with its paired-bootstrap CI and p-value (p: probability that the method is *not* better);
    the baseline's own rows, and methods when the baseline has no point within the budget, have no test. With
    ``split``, the points are chosen (KL and reward) on the selection prompts and reported and tested on the
    confirmation ones; ``p_holm`` is the two-sided p until :func:`adjust` corrects it.
    """
    choose, report, ids = _views(points, per_prompt, split, n_resamples, seed)
    best = best_within(choose[choose["method"] != REFERENCE], budgets)
    rows = []
    for budget, at in best.groupby("budget", sort=True):
        at = pd.DataFrame([{**_same_point(report, r).to_dict(), "budget": budget} for _, r in at.iterrows()])
        base = at[at["method"] == baseline]
        for _, row in at.iterrows():
            out = {c: row[c] for c in COMPARISON_COLUMNS if c in row}
            if not base.empty and row["method"] != baseline:
                b = base.iloc[0]
                test = paired_bootstrap_test(prompt_values(per_prompt, row, ids=ids), prompt_values(per_prompt, b, ids=ids),
                                             n_resamples=n_resamples, seed=seed)
                out.update(vs=baseline, vs_beta=b["beta"], vs_step=b["step"], vs_reward=b["reward"],
                           delta=test.delta, delta_low=test.ci_low, delta_high=test.ci_high, p_value=test.p_value,
                           p_holm=two_sided(test.p_value),
                           seeds_agree=agreement(seed_deltas(by_seed, row, b, ids), test.delta))
            rows.append(out)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


FRONT_COLUMNS = ["budget", "method", "reward", "reward_low", "reward_high", "n_within", "beyond_last", "vs", "delta",
                 "delta_low", "delta_high", "p_value", "p_holm"]


def _grids(per_prompt: pd.DataFrame, ids: np.ndarray | None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Every point's key (method, beta, step) and its per-prompt reward and KL, ``(n_points, n_prompts)`` each,
    over the prompts every point has (of ``ids``, if given)."""
    rows = per_prompt if ids is None else per_prompt[per_prompt["prompt_id"].isin(ids)]
    groups = list(rows.groupby(["method", "beta", "step"], sort=True, dropna=False))
    shared = set.intersection(*(set(g["prompt_id"]) for _, g in groups)) if groups else set()
    keys = pd.DataFrame([k for k, _ in groups], columns=["method", "beta", "step"])
    grids = [g[g["prompt_id"].isin(shared)].sort_values("prompt_id") for _, g in groups]
    return (keys, np.array([g["reward"].to_numpy(float) for g in grids]),
            np.array([g["kl"].to_numpy(float) for g in grids]))


def interpolated_fronts(per_prompt: pd.DataFrame, budgets: list[float], *, baseline: str = BASELINE,
                        ids: np.ndarray | None = None, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per KL budget and method, the reward of the method's front read at the budget (:func:`front_value` over
    its points and the reference point, so mixtures of neighbouring points count), with a percentile bootstrap
    CI over prompts, and its difference from the ``baseline``'s front on the same resamples (paired), p =
    P(not better). ``n_within``: the method's points with KL <= budget; ``beyond_last``: the budget lies past
    the method's largest KL (its front is read flat there). Prompts ``ids`` only, if given."""
    keys, reward, kl = _grids(per_prompt, ids)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, reward.shape[1], size=(n_resamples, reward.shape[1]))
    obs_r, obs_k = reward.mean(1), kl.mean(1)
    res_r, res_k = reward[:, idx].mean(-1), kl[:, idx].mean(-1)  # (n_points, n_resamples)
    ref = np.flatnonzero(keys["method"] == REFERENCE)
    values: dict[tuple[float, str], tuple[float, np.ndarray, int, bool]] = {}
    for method in sorted(m for m in keys["method"].unique() if m != REFERENCE):
        own = np.flatnonzero(keys["method"] == method)
        pts = np.concatenate([ref, own])
        for b in budgets:
            obs = front_value(obs_k[pts], obs_r[pts], b)
            boot = np.array([front_value(res_k[pts, r], res_r[pts, r], b) for r in range(n_resamples)])
            values[(b, method)] = (obs, boot, int((obs_k[own] <= b).sum()), bool(b > obs_k[own].max()))
    rows = []
    for (b, method), (obs, boot, n_within, beyond) in values.items():
        row = {"budget": b, "method": method, "reward": obs, "reward_low": float(np.nanquantile(boot, 0.025)),
               "reward_high": float(np.nanquantile(boot, 0.975)), "n_within": n_within, "beyond_last": beyond}
        base = values.get((b, baseline))
        if base is not None and method != baseline:
            d = boot - base[1]
            row.update(vs=baseline, delta=obs - base[0], delta_low=float(np.nanquantile(d, 0.025)),
                       delta_high=float(np.nanquantile(d, 0.975)), p_value=float(np.mean(~(d > 0))),
                       p_holm=two_sided(float(np.mean(~(d > 0)))))
        rows.append(row)
    return pd.DataFrame(rows, columns=FRONT_COLUMNS)


def adjust(gain: dict[str, Any] | None, matched: pd.DataFrame,
           fronts: pd.DataFrame | None = None) -> tuple[dict[str, Any] | None, pd.DataFrame, int]:
    """Holm's correction of the two-sided p-values over every verdict (the gain test, each matched-KL test and,
    if given, each interpolated-front test, whose ``p_holm`` is corrected in place): returns the gain and
    matched table with ``p_holm`` adjusted, and the number of verdicts."""
    tables = [t for t in (matched, fronts) if t is not None]
    tested = [t["p_value"].notna() for t in tables]
    raw = ([gain["p_holm"]] if gain else []) + [two_sided(p) for t, m in zip(tables, tested, strict=True)
                                                  for p in t.loc[m, "p_value"]]
    adjusted = holm(raw)
    if gain:
        gain = {**gain, "p_holm": adjusted[0]}
        adjusted = adjusted[1:]
    matched = matched.copy()
    for t, m in zip([matched, *tables[1:]], tested, strict=True):
        t.loc[m, "p_holm"] = adjusted[: int(m.sum())]
        adjusted = adjusted[int(m.sum()):]
    return gain, matched, len(raw)


def front_areas(points: pd.DataFrame, x_max: float) -> pd.DataFrame:
    """Per method, the area of its front above the reference's reward over KL in [0, x_max] (reward x nats)."""
    ref = points[points["method"] == REFERENCE]
    floor = float(ref["reward"].iloc[0]) if not ref.empty else float(points["reward"].min())
    trained = points[points["method"] != REFERENCE]
    rows = [{"method": m, "area": front_area(g, x_max, floor), "kl_max": x_max}
            for m, g in trained.groupby("method", sort=True)]
    return pd.DataFrame(rows, columns=["method", "area", "kl_max"]).sort_values("area", ascending=False)


def verdict(p: float, delta_low: float, delta_high: float, p_holm: float | None = None) -> str:
    """Words for a paired test of A vs B: ``p`` = P(A not better than B) under resampling, ``delta_low`` /
    ``delta_high`` the 95% CI of A - B, ``p_holm`` the two-sided p after Holm's correction over the report's
    verdicts (None: one verdict). Better or worse only when that whole CI is on one side of 0 and the corrected
    p is below ``ALPHA``, so the words never contradict the interval printed beside them (identical systems have
    p = 1 but are not worse)."""
    corrected = two_sided(p) if p_holm is None else p_holm
    if (delta_low > 0 or delta_high < 0) and corrected >= ALPHA:
        return (f"not distinguishable after Holm's correction over the report's verdicts (corrected p = "
                f"{corrected:.3f}; its 95% CI excludes 0 before correction)")
    if delta_low > 0:
        return "clearly better (p < 0.01)" if p < 0.01 else f"significantly better (p = {p:.3f}; its 95% CI is above 0)"
    if delta_high < 0:
        return "significantly worse (its 95% CI of the difference is below 0)"
    return f"not distinguishable (p = {p:.2f}: the 95% CI of the difference contains 0)"


def _seeds_words(agree: str | None) -> str:
    if not isinstance(agree, str) or not agree:
        return ""
    k, n = agree.split("/")
    if n == "1":
        return ""
    return "; the difference has this sign on every seed" if k == n else f"; the difference has this sign on {k} of {n} seeds only"


def conclusions(gain: dict[str, Any] | None, matched: pd.DataFrame, areas: pd.DataFrame,
                target_gain: float = 0.15, fronts: pd.DataFrame | None = None) -> list[str]:
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
        f"{verdict(gain['p_value'], gain['delta_low'], gain['delta_high'], gain.get('p_holm'))}"
        f"{_seeds_words(gain.get('seeds_agree'))}."
    )
    reached = gain["gain"] >= target_gain and not gain["cis_overlap"] and gain.get("p_holm", 0.0) < ALPHA
    lines.append(f"Preference alignment {'is' if reached else 'is not'} shown at the +{target_gain:g} level "
                 "(gain >= target with separated CIs).")
    for _, row in matched[matched["vs"].notna()].iterrows():
        lines.append(
            f"At KL <= {row['budget']:.3g} nats, {row['method']}'s best reward {row['reward']:.3f} vs "
            f"{row['vs']}'s {row['vs_reward']:.3f}: difference {row['delta']:+.3f} "
            f"[{row['delta_low']:+.3f}, {row['delta_high']:+.3f}]; {row['method']} is {verdict(row['p_value'], row['delta_low'], row['delta_high'], row.get('p_holm'))}"
            f"{_seeds_words(row.get('seeds_agree'))}."
        )
    for _, row in (fronts if fronts is not None else pd.DataFrame(columns=["vs"])).iterrows():
        if pd.isna(row["vs"]):
            continue
        flat = " (past its last point: read flat)" if row["beyond_last"] else ""
        lines.append(
            f"Fronts read at KL = {row['budget']:.3g} nats: {row['method']} {row['reward']:.3f} "
            f"[{row['reward_low']:.3f}, {row['reward_high']:.3f}]{flat} vs {row['vs']} "
            f"{row['reward'] - row['delta']:.3f}: difference {row['delta']:+.3f} [{row['delta_low']:+.3f}, "
            f"{row['delta_high']:+.3f}]; {row['method']} is "
            f"{verdict(row['p_value'], row['delta_low'], row['delta_high'], row['p_holm'])}."
        )
    if len(areas):
        top = areas.iloc[0]
        lines.append(f"Over KL in [0, {top['kl_max']:.3g}] nats the largest area above the reference's reward is "
                     f"{top['method']}'s ({top['area']:.3f} reward x nats).")
    return lines
