"""Mask sparsity over training (paper section 3.2, Figure 3), per method, beta and training seed, and the paper's
two readings of it checked on every seed:

1. the reward mask's sparsity falls during training (it "starts high ... steadily decreasing");
2. a higher beta makes the divergence (KL) mask sparser.

A logged step's sparsity is measured on that step's batch only (a few pairs), so it is noisy from step to step:
"start" is the first logged step (the masks as initialised, before any update), "end" the mean over the last
quarter of the logged steps.
"""

from __future__ import annotations

import pandas as pd

REWARD, KL = "sparsity/reward/chosen", "sparsity/kl/chosen"
SUMMARY_COLUMNS = ["method", "beta", "seed", "reward_start", "reward_end", "kl_start", "kl_end"]


def sparsity_summary(train_points: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, beta, seed) with learned masks or zoo weightings (ConfPO, SePO: tokens weighted 0):
    chosen-side reward- and KL-mask sparsity (%) at the start and end of training (see the module docstring).
    MaPO's masks, fixed by the reference, are left out."""
    from sparsepo.objectives.losses import LOSSES

    if REWARD not in train_points or train_points[REWARD].isna().all():
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    learned = train_points["method"].map(
        lambda m: m in LOSSES and (LOSSES[m].mask == "learned" or LOSSES[m].weights is not None))
    df = train_points[learned].dropna(subset=[REWARD])
    df = df.assign(seed=df["seed"]) if "seed" in df else df.assign(seed=0)
    rows = []
    for (method, beta, seed), g in df.groupby(["method", "beta", "seed"], sort=True):
        g = g.sort_values("step")
        tail = g.iloc[-max(1, len(g) // 4):]
        row = {"method": method, "beta": beta, "seed": int(seed)}
        for col, name in ((REWARD, "reward"), (KL, "kl")):
            has = col in g and g[col].notna().any()
            row[f"{name}_start"] = float(g[col].iloc[0]) if has else float("nan")
            row[f"{name}_end"] = float(tail[col].mean()) if has else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def sparsity_findings(summary: pd.DataFrame) -> list[str]:
    """Plain-language lines: for each masked method, on how many seeds each of the paper's two readings holds."""
    lines = []
    for method, m in summary.groupby("method", sort=True):
        seeds = sorted(m["seed"].unique())
        falls = [(s, b) for (s, b), g in m.groupby(["seed", "beta"]) if g["reward_end"].iloc[0] < g["reward_start"].iloc[0]]
        n = len(m)
        start = m["reward_start"]
        lines.append(f"{method}: reward-mask sparsity starts at {start.min():.0f}-{start.max():.0f}% over "
                     f"{len(seeds)} seed(s) and {m['beta'].nunique()} beta(s); it falls during training in {len(falls)} "
                     f"of {n} runs (start -> end per run in the table below).")
        betas = sorted(m["beta"].unique())
        kl = m.dropna(subset=["kl_end"])
        if len(betas) > 1 and not kl.empty:
            lo, hi = betas[0], betas[-1]
            ordered = []
            for seed, g in kl.groupby("seed"):
                ends = g.set_index("beta")["kl_end"]
                if lo in ends and hi in ends:
                    ordered.append((seed, ends[hi] > ends[lo]))
            ok = sum(o for _, o in ordered)
            verdict = "holds on every seed" if ok == len(ordered) else f"holds on {ok} of {len(ordered)} seeds"
            lines.append(f"{method}: the KL mask ends sparser at beta {hi:g} than at beta {lo:g} (the paper's "
                         f"reading): {verdict}.")
    return lines
