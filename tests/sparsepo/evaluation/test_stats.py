"""Bootstrap statistics against known cases and closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from sparsepo.evaluation.stats import bootstrap_ci, paired_bootstrap_test, significance_table


def test_ci_of_constant_is_degenerate():
    ci = bootstrap_ci(np.full(50, 3.25), n_resamples=500, seed=1)
    assert ci.value == ci.low == ci.high == 3.25
    assert ci.n == 50


def test_ci_of_mean_matches_normal_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=2.0, scale=3.0, size=4000)
    ci = bootstrap_ci(x, n_resamples=4000, alpha=0.05, seed=3)
    half = sps.norm.ppf(0.975) * x.std(ddof=1) / np.sqrt(x.size)
    assert ci.value == pytest.approx(x.mean())
    # Percentile bootstrap of a mean of a large normal sample ~ mean +- z * s / sqrt(n).
    assert ci.low == pytest.approx(x.mean() - half, abs=0.08 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.08 * half)


def test_ci_alpha_and_seed_behave():
    x = np.random.default_rng(5).exponential(size=300)
    wide, narrow = bootstrap_ci(x, alpha=0.01, seed=0), bootstrap_ci(x, alpha=0.2, seed=0)
    assert wide.low < narrow.low < narrow.high < wide.high
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci(x, seed=7) != bootstrap_ci(x, seed=8)


def test_ci_with_median_statistic():
    x = np.arange(101, dtype=float)
    ci = bootstrap_ci(x, statistic=np.median, n_resamples=300)
    assert ci.value == 50.0 and ci.low < 50.0 < ci.high


def test_large_clear_difference_gives_p_near_zero():
    rng = np.random.default_rng(1)
    base = rng.normal(size=200)
    res = paired_bootstrap_test(base + 1.0, base + rng.normal(scale=0.1, size=200), n_resamples=2000)
    assert res.p_value == 0.0
    assert res.delta == pytest.approx(1.0, abs=0.05)
    assert res.ci_low > 0.9


def test_identical_systems_are_not_better():
    x = np.random.default_rng(2).uniform(size=100)
    res = paired_bootstrap_test(x, x.copy())
    assert res.delta == 0.0 and res.p_value == 1.0


def test_exchangeable_systems_give_p_near_half():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 400))
    b = b - (b.mean() - a.mean())  # equal observed means: no evidence either way
    res = paired_bootstrap_test(a, b, n_resamples=4000)
    assert 0.4 < res.p_value < 0.6


def test_lower_is_better_flips_orientation():
    a, b = np.full(30, 1.0) + np.linspace(0, 0.1, 30), np.full(30, 5.0)
    assert paired_bootstrap_test(a, b, higher_is_better=False).p_value == 0.0
    assert paired_bootstrap_test(a, b, higher_is_better=True).p_value == 1.0


def test_paired_test_p_value_matches_brute_force():
    # Independent reference: draw the same indices with an explicit loop.
    rng_data = np.random.default_rng(9)
    a, b = rng_data.normal(size=(2, 25)) + np.array([[0.2], [0.0]])
    res = paired_bootstrap_test(a, b, n_resamples=300, seed=11)
    rng = np.random.default_rng(11)
    idx = rng.integers(0, 25, size=(300, 25))
    deltas = [a[row].mean() - b[row].mean() for row in idx]
    assert res.p_value == pytest.approx(np.mean(np.array(deltas) <= 0))
    assert res.ci_low == pytest.approx(np.quantile(deltas, 0.025))


def test_bad_input_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="item 2 is not finite"):
        bootstrap_ci([1.0, 2.0, float("nan")])
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1.0], alpha=1.5)


def _items(system: str, values: np.ndarray, metric: str = "m") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "system": system,
            "suite": "s",
            "metric": metric,
            "setting": "t=1",
            "item": [f"doc{i}" for i in range(len(values))],
            "value": values,
        }
    )


def test_significance_table_pairs_items_by_key():
    rng = np.random.default_rng(0)
    good = rng.normal(size=60) + 2.0
    items = pd.concat(
        [
            _items("A", good),
            _items("B", good - 2.0).iloc[::-1],  # reversed rows: pairing must use the item key
            _items("A", np.zeros(5), metric="lower"),
            _items("B", np.ones(5), metric="lower"),
        ]
    )
    table = significance_table(items, "A", "B", higher_is_better={"lower": False})
    row_m = table[table["metric"] == "m"].iloc[0]
    assert row_m["delta"] == pytest.approx(2.0) and row_m["p_value"] == 0.0
    assert row_m["ci_low"] == pytest.approx(2.0) and row_m["n"] == 60
    row_lower = table[table["metric"] == "lower"].iloc[0]
    assert row_lower["delta"] == pytest.approx(1.0) and row_lower["p_value"] == 0.0


def test_significance_table_rejects_duplicate_items():
    items = pd.concat([_items("A", np.ones(3)), _items("A", np.ones(3)), _items("B", np.ones(3))])
    with pytest.raises(ValueError, match="several values for item 'doc0'"):
        significance_table(items, "A", "B")


def test_seeds_prompts_bootstrap_against_a_written_out_two_level_resampling():
    from sparsepo.evaluation.stats import seeds_prompts_bootstrap_ci

    rng = np.random.default_rng(5)
    values = rng.normal(0, 1, (3, 40)) + np.array([[0.0], [0.5], [1.0]])  # seeds disagree by up to 1
    ci = seeds_prompts_bootstrap_ci(values, n_resamples=300, seed=9)
    draws = np.random.default_rng(9)
    seeds, prompts = draws.integers(0, 3, size=(300, 3)), draws.integers(0, 40, size=(300, 40))
    stats = [np.mean([values[s, p] for s in seeds[r] for p in prompts[r]]) for r in range(300)]
    assert (ci.value, ci.low, ci.high) == pytest.approx((values.mean(), *np.quantile(stats, [0.025, 0.975])))
    # seed-to-seed spread widens the interval beyond a bootstrap over prompts of the seed means
    prompts_only = bootstrap_ci(values.mean(0), n_resamples=300, seed=9)
    assert ci.high - ci.low > 1.5 * (prompts_only.high - prompts_only.low)
    with pytest.raises(ValueError, match="n_seeds, n_prompts"):
        seeds_prompts_bootstrap_ci(values[0])
