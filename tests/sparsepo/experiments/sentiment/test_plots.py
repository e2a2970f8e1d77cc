"""Frontier and sparsity figures: the plotted artists carry exactly the input data, and PNGs are written."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from sparsepo.experiments.sentiment.pareto import pareto_front
from sparsepo.experiments.sentiment.plots import (
    SPARSITY_PANELS,
    frontier_figure,
    plot_frontier,
    plot_sparsity,
    sparsity_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        assert w > 100 and h > 100
        # not a blank canvas: more than one distinct colour was drawn
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20)) > 10


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    rows = []
    for method in ["dpo", "sparsepo", "tdpo_v1"]:
        for beta in [0.1, 0.8]:
            for step in range(0, 50, 10):
                rows.append(
                    {
                        "method": method,
                        "beta": beta,
                        "step": step,
                        "kl": float(rng.exponential(5.0)),
                        "reward": float(rng.uniform(0.3, 1.0)),
                    }
                )
    return pd.DataFrame(rows)


def artists_by_label(ax):
    scatters = {c.get_label(): c for c in ax.collections}
    lines = {line.get_label(): line for line in ax.lines}
    return scatters, lines


def test_frontier_figure_plots_every_point_and_each_front(points):
    front = pareto_front(points, group="method")
    fig = frontier_figure(points, front)
    (ax,) = fig.axes
    scatters, lines = artists_by_label(ax)
    assert set(scatters) == {"dpo", "sparsepo", "tdpo_v1"}
    assert set(lines) == {"dpo front", "sparsepo front", "tdpo_v1 front"}
    for method, sub in points.groupby("method"):
        np.testing.assert_array_equal(scatters[method].get_offsets(), sub[["kl", "reward"]].to_numpy())
        expected_front = front[front["method"] == method].sort_values("kl")[["kl", "reward"]].to_numpy()
        np.testing.assert_array_equal(lines[f"{method} front"].get_xydata(), expected_front)
        # the method's points and its front share one colour
        np.testing.assert_allclose(
            scatters[method].get_facecolor()[0][:3], to_rgb(lines[f"{method} front"].get_color())
        )
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(points)


def test_plot_frontier_writes_png(tmp_path, points):
    out = plot_frontier(points, pareto_front(points, group="method"), tmp_path / "figs" / "frontier.png")
    assert out == tmp_path / "figs" / "frontier.png"
    assert_valid_png(out)


def test_frontier_rejects_missing_columns_and_nan(points):
    with pytest.raises(KeyError, match="points_df: missing column"):
        frontier_figure(points.drop(columns="kl"), points)
    bad = points.copy()
    bad.loc[7, "reward"] = np.nan
    with pytest.raises(ValueError, match="'reward' at row 7"):
        frontier_figure(bad, pareto_front(points, group="method"))


def test_frontier_of_empty_table_says_no_data(tmp_path, points):
    fig = frontier_figure(points.iloc[:0], points.iloc[:0])
    (ax,) = fig.axes
    assert not ax.collections and not ax.lines
    assert any("no data" in t.get_text() for t in ax.texts)


@pytest.fixture
def steps():
    rng = np.random.default_rng(1)
    rows = []
    for beta in [0.1, 0.6, 0.8]:
        for step in [30, 0, 20, 10]:  # unsorted on purpose: lines must be sorted by step
            for seed in range(2):  # two seeds per step: lines show their mean
                rows.append(
                    {
                        "method": "sparsepo",
                        "beta": beta,
                        "step": step,
                        "seed": seed,
                        "kl": 0.0,
                        "reward": 0.0,
                        "sparsity/reward/chosen": float(rng.uniform(0, 100)),
                        "sparsity/kl/chosen": float(rng.uniform(0, 100)),
                        "kl/chosen": float(rng.exponential(2.0)),
                    }
                )
    return pd.DataFrame(rows)


def test_sparsity_figure_lines_equal_per_step_means(steps):
    fig = sparsity_figure(steps)
    assert len(fig.axes) == len(SPARSITY_PANELS)
    for ax, col in zip(fig.axes, SPARSITY_PANELS, strict=True):
        assert ax.get_title() == col
        lines = {line.get_label(): line.get_xydata() for line in ax.lines}
        assert set(lines) == {f"beta={b} (2 seeds, min-max)" for b in ("0.1", "0.6", "0.8")}
        assert len(ax.collections) == 3  # one seed band per line
        for (beta, sub), band in zip(steps.groupby("beta"), ax.collections, strict=True):
            expected = [
                (step, np.mean([r[col] for _, r in sub.iterrows() if r["step"] == step]))
                for step in sorted(sub["step"].unique())
            ]
            np.testing.assert_allclose(lines[f"beta={beta:g} (2 seeds, min-max)"], np.array(expected))
            # the band spans the lowest and highest seed at every step
            ys = band.get_paths()[0].vertices[:, 1]
            per_step = sub.groupby("step")[col]
            assert np.isclose(ys.min(), per_step.min().min()) and np.isclose(ys.max(), per_step.max().max())


def test_sparsity_missing_and_nan_columns_say_no_data(tmp_path, steps):
    df = steps[steps["seed"] == 0].drop(columns=["sparsity/kl/chosen", "seed"])  # one seed: no band, plain labels
    # a baseline without masks: its sparsity is NaN and it must not produce a line in the sparsity panel
    dpo = df.assign(method="dpo", **{"sparsity/reward/chosen": np.nan})
    df = pd.concat([df, dpo], ignore_index=True)
    fig = sparsity_figure(df)
    reward_ax, kl_mask_ax, kl_ax = fig.axes
    assert {line.get_label() for line in reward_ax.lines} == {"beta=0.1", "beta=0.6", "beta=0.8"}
    assert not kl_mask_ax.lines and not reward_ax.collections
    assert any("missing" in t.get_text() for t in kl_mask_ax.texts)
    # two methods in the KL panel: labels name the method
    assert {line.get_label() for line in kl_ax.lines} == {
        f"{m} beta={b:g}" for m in ["dpo", "sparsepo"] for b in [0.1, 0.6, 0.8]
    }
    all_nan = steps.assign(**{col: np.nan for col in SPARSITY_PANELS})
    for ax in sparsity_figure(all_nan).axes:
        assert not ax.lines and any("all NaN" in t.get_text() for t in ax.texts)
    assert_valid_png(plot_sparsity(steps.drop(columns=list(SPARSITY_PANELS)), tmp_path / "empty.png"))


def test_plot_sparsity_writes_png_and_rejects_bad_input(tmp_path, steps):
    assert_valid_png(plot_sparsity(steps, tmp_path / "sparsity.png"))
    with pytest.raises(KeyError, match="missing column.*'step'"):
        sparsity_figure(steps.drop(columns="step"))
    bad = steps.copy()
    bad.loc[3, "beta"] = np.nan
    with pytest.raises(ValueError, match="'beta' at row 3"):
        sparsity_figure(bad)


def test_frontier_draws_the_reference_star_and_ci_error_bars(tmp_path, points):
    pts = points.assign(reward_low=points["reward"] - 0.05, reward_high=points["reward"] + 0.04,
                        kl_low=points["kl"] * 0.9, kl_high=points["kl"] * 1.2)
    front = pareto_front(pts, group="method")
    ref = {"kl": 0.0, "reward": 0.5, "kl_low": 0.0, "kl_high": 0.0, "reward_low": 0.45, "reward_high": 0.55}
    fig = frontier_figure(pts, front, reference=ref)
    ax = fig.axes[0]
    scatters, _ = artists_by_label(ax)
    star = scatters["reference (step 0)"]
    assert star.get_offsets().tolist() == [[0.0, 0.5]]
    # One error-bar container per front plus the reference's; the y bars span exactly the CI.
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == front["method"].nunique() + 1
    ref_bars = bars[-1].lines[2]  # (x bars, y bars) line collections
    segs = [s for coll in ref_bars for s in coll.get_segments()]
    assert any(np.allclose(s, [[0.0, 0.45], [0.0, 0.55]]) for s in segs)
    assert_valid_png(plot_frontier(pts, front, tmp_path / "f.png", reference=ref))
