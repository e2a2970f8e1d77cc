"""The frontier experiment's output folder: tables, fronts, matched-KL comparison, figures and ``report.md``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from sparsepo.evaluation.report import settings_markdown, to_markdown
from sparsepo.experiments.sentiment.comparison import (
    ALPHA,
    adjust,
    conclusions,
    front_areas,
    gain_over_reference,
    interpolated_fronts,
    kl_budgets,
    matched_kl,
    points_on,
    split_prompts,
)
from sparsepo.experiments.sentiment.pareto import pareto_front
from sparsepo.experiments.sentiment.plots import (
    REJECTED_PANELS,
    SPARSITY_PANELS,
    plot_frontier,
    plot_sparsity,
)
from sparsepo.experiments.sentiment.points import REFERENCE, reference_point
from sparsepo.experiments.sentiment.sparsity import sparsity_findings, sparsity_summary

POINT_VIEW = ["method", "beta", "step", "reward", "reward_low", "reward_high", "kl", "kl_low", "kl_high"]
TARGET_GAIN = 0.15  # the reward gain over the reference the default run must show (issue 7)
CI_TARGET = 0.05  # the largest half-width of a point's reward CI the default's number of test prompts allows


def fronts(points: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(by_method, overall)`` Pareto fronts; the reference point belongs to every front (it is every
    method's step 0)."""
    ref = points[points["method"] == REFERENCE]
    trained = points[points["method"] != REFERENCE]
    with_ref = [trained] + [ref.assign(method=m) for m in trained["method"].unique()]
    by_method = pareto_front(pd.concat(with_ref, ignore_index=True), x="kl", y="reward", group="method")
    return by_method, pareto_front(points, x="kl", y="reward")


def _ci_line(points: pd.DataFrame) -> str:
    trained = points[points["method"] != REFERENCE]
    if trained.empty:
        return ""
    half = ((trained["reward_high"] - trained["reward_low"]) / 2).max()
    n = int(trained["n_prompts"].max())
    met = "within" if half <= CI_TARGET else "wider than"
    return (f"Every point is the mean over {n} held-out prompts (one completion each) with its 95% percentile "
            f"bootstrap CI; the widest reward CI is +-{half:.3f}, {met} the +-{CI_TARGET:g} target.")


def _method_note(cfg: Any, split: Any, n_verdicts: int) -> str:
    return (f"How these verdicts are made: every choice (the best point, each method's best within a KL budget) is "
            f"made on {len(split.selection)} selection prompts and every number and test below on the other "
            f"{len(split.confirmation)} (confirmation) prompts, a split fixed by the seed; tests are paired bootstraps "
            f"over prompts, with Holm's correction over the report's {n_verdicts} verdicts (two-sided, family-wise "
            f"{ALPHA:g}); a point's CI is its 95% percentile bootstrap CI over the confirmation prompts. The pairs were "
            f"ranked by the same scorer that evaluates the policies (`{cfg.reward}`), as in the paper's setup, so the "
            f"reward measures agreement with that scorer. The tables of points and fronts use all prompts.")


def _sparsity_section(sparsity: pd.DataFrame) -> list[str]:
    if sparsity.empty:
        return []
    return [
        "## Mask sparsity over training (paper Figure 3)",
        "",
        "Chosen responses, % of response tokens whose mask is 0: `start` at the first step (the masks as "
        "initialised), `end` the mean over the last quarter of the steps (each step's value is of its own batch).",
        "",
        *(f"- {line}" for line in sparsity_findings(sparsity)),
        "",
        to_markdown(sparsity, float_format=".1f"),
        "",
    ]


def report_text(cfg: Any, points: pd.DataFrame, overall: pd.DataFrame, by_method: pd.DataFrame,
                matched: pd.DataFrame, areas: pd.DataFrame, summary: list[str], elapsed_s: float,
                sparsity: pd.DataFrame | None = None, fronts_at: pd.DataFrame | None = None) -> str:
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "overrides"}
    ref = reference_point(points)
    view = [c for c in POINT_VIEW if c in points]
    return "\n".join([
        f"# Reward-KL frontier: {cfg.name}",
        "",
        f"Model `{cfg.model}` (reference `{cfg.ref or cfg.model}`), reward `{cfg.reward}`, "
        f"{len(points) - (ref is not None)} evaluation points and the reference point, wall time {elapsed_s:.0f} s.",
        _ci_line(points),
        "",
        "## What it shows",
        "",
        *(f"- {line}" for line in summary),
        "",
        "## Reference point (step 0, KL 0)",
        "",
        to_markdown(points[points["method"] == REFERENCE][view]) if ref is not None else "(none)",
        "",
        "## Pareto front (all methods)",
        "",
        to_markdown(overall[view]),
        "",
        "## Pareto front per method (each starts at the reference point)",
        "",
        to_markdown(by_method[view]),
        "",
        "## Methods at matched KL",
        "",
        "Best point of each method within each KL budget, chosen on the selection prompts; its numbers are of the "
        "confirmation prompts. `delta` = its reward minus the baseline's best within the same budget, with the "
        "paired bootstrap CI over prompts, p = P(not better) and `p_holm` the two-sided p after Holm's correction.",
        "",
        to_markdown(matched),
        "",
        "Each method's front read at each budget (its points and the reference's, mixtures of two points "
        "included; confirmation prompts; `beyond_last`: past the method's largest KL, read flat), against DPO's:",
        "",
        to_markdown(fronts_at) if fronts_at is not None else "(none)",
        "",
        "Area of each method's front above the reference's reward (reward x nats; confirmation prompts):",
        "",
        to_markdown(areas),
        "",
        "## Every point",
        "",
        to_markdown(points[view]),
        "",
        "![frontier](frontier.png)",
        "",
        "Per training step (paper Figure 3; rejected responses and loss as its appendix Figure 7; with several "
        "training seeds each line is their mean and its band spans them):",
        "",
        "![sparsity](sparsity.png) ![sparsity, rejected](sparsity_rejected.png)",
        "",
        *_sparsity_section(sparsity if sparsity is not None else pd.DataFrame()),
        *settings_markdown(settings),
    ])


def write_outputs(points: pd.DataFrame, per_prompt: pd.DataFrame, train_points: pd.DataFrame, out: Path, cfg: Any,
                  elapsed_s: float, by_seed: pd.DataFrame | None = None,
                  per_prompt_by_seed: pd.DataFrame | None = None) -> dict[str, Path]:
    """Write every table, figure and the report into ``out``; returns name -> path. ``by_seed``: the points of
    each training seed (``points_by_seed.csv``); ``per_prompt_by_seed``: their per-prompt values (each verdict
    says on how many seeds it holds)."""
    out.mkdir(parents=True, exist_ok=True)
    by_method, overall = fronts(points)
    budgets = kl_budgets(points, tuple(cfg.kl_budgets))
    split = split_prompts(per_prompt, cfg.seed)
    stats = {"n_resamples": cfg.n_resamples, "seed": cfg.seed, "split": split, "by_seed": per_prompt_by_seed}
    fronts_at = interpolated_fronts(per_prompt, budgets, ids=split.confirmation, n_resamples=cfg.n_resamples,
                                    seed=cfg.seed)
    gain, matched, n_verdicts = adjust(gain_over_reference(points, per_prompt, **stats),
                                       matched_kl(points, per_prompt, budgets, **stats), fronts_at)
    confirm = points_on(per_prompt, split.confirmation, n_resamples=cfg.n_resamples, seed=cfg.seed)
    areas = front_areas(confirm, max(budgets)) if budgets else pd.DataFrame(columns=["method", "area", "kl_max"])
    method_note = _method_note(cfg, split, n_verdicts)
    files = {name: out / name for name in ("points.csv", "per_prompt.csv", "train_points.csv", "front_by_method.csv",
                                           "front_overall.csv", "matched_kl.csv", "frontier.png", "sparsity.png",
                                           "sparsity_rejected.png", "sparsity_summary.csv", "points_by_seed.csv",
                                           "report.md")}
    points.to_csv(files["points.csv"], index=False)
    points.to_parquet(out / "points.parquet", index=False)
    per_prompt.to_csv(files["per_prompt.csv"], index=False)
    train_points.to_csv(files["train_points.csv"], index=False)
    (by_seed if by_seed is not None else points).to_csv(files["points_by_seed.csv"], index=False)
    sparsity = sparsity_summary(train_points)
    sparsity.to_csv(files["sparsity_summary.csv"], index=False)
    by_method.to_csv(files["front_by_method.csv"], index=False)
    overall.to_csv(files["front_overall.csv"], index=False)
    matched.to_csv(files["matched_kl.csv"], index=False)
    trained = points[points["method"] != REFERENCE]
    plot_frontier(trained, by_method, files["frontier.png"], reference=reference_point(points))
    plot_sparsity(train_points, files["sparsity.png"], {**SPARSITY_PANELS, "loss": "training loss"})
    plot_sparsity(train_points, files["sparsity_rejected.png"], REJECTED_PANELS)
    fronts_at.to_csv(out / "fronts_at_budgets.csv", index=False)
    summary = [method_note, *conclusions(gain, matched, areas, TARGET_GAIN, fronts_at)]
    files["report.md"].write_text(report_text(cfg, points, overall, by_method, matched, areas, summary, elapsed_s,
                                                  sparsity, fronts_at))
    # Short names for callers and tests.
    return {**files, "points": files["points.csv"], "report": files["report.md"], "frontier": files["frontier.png"],
            "sparsity": files["sparsity.png"], "front_overall": files["front_overall.csv"],
            "train_points": files["train_points.csv"], "per_prompt": files["per_prompt.csv"]}
