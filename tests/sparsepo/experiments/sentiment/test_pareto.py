"""pareto_front against a brute-force O(n^2) dominance check on random point sets, plus hand cases."""

import numpy as np
import pandas as pd
import pytest

from sparsepo.experiments.sentiment.pareto import pareto_front, pareto_mask


def brute_force_front(x: np.ndarray, y: np.ndarray) -> set[int]:
    """Positions of non-dominated points; of exact duplicates the lowest position is kept."""
    keep = set()
    for i in range(len(x)):
        dominated = False
        for j in range(len(x)):
            if j == i:
                continue
            better_or_equal = x[j] <= x[i] and y[j] >= y[i]
            strictly = x[j] < x[i] or y[j] > y[i]
            duplicate_before = x[j] == x[i] and y[j] == y[i] and j < i
            if (better_or_equal and strictly) or duplicate_before:
                dominated = True
                break
        if not dominated:
            keep.add(i)
    return keep


@pytest.mark.parametrize("seed", range(40))
def test_mask_matches_brute_force_on_random_sets(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    if seed % 2:
        # a coarse integer grid forces ties in x, ties in y and exact duplicates
        x = rng.integers(0, 6, n).astype(float)
        y = rng.integers(0, 6, n).astype(float)
    else:
        x = rng.exponential(1.0, n)
        y = rng.normal(0.0, 1.0, n)
    assert set(np.flatnonzero(pareto_mask(x, y))) == brute_force_front(x, y)


@pytest.mark.parametrize("seed", range(10))
def test_grouped_front_is_per_group_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    n = 80
    df = pd.DataFrame(
        {
            "method": rng.choice(["dpo", "sparsepo", "simpo"], n),
            "beta": rng.choice([0.1, 0.8], n),
            "kl": rng.integers(0, 8, n).astype(float),
            "reward": rng.integers(0, 8, n).astype(float),
        },
        # a shuffled, non-default index: the result must keep the original labels
        index=rng.permutation(np.arange(1000, 1000 + n)),
    )
    front = pareto_front(df, group="method")
    expected = set()
    for _, sub in df.groupby("method"):
        pos = brute_force_front(sub["kl"].to_numpy(), sub["reward"].to_numpy())
        expected |= {sub.index[p] for p in pos}
    assert set(front.index) == expected
    assert list(front.columns) == list(df.columns)
    pd.testing.assert_frame_equal(front, df.loc[front.index])
    for _, sub in front.groupby("method"):
        assert np.all(np.diff(sub["kl"]) > 0) and np.all(np.diff(sub["reward"]) > 0)
    assert list(front["method"]) == sorted(front["method"])

    two_keys = pareto_front(df, group=["method", "beta"])
    expected2 = set()
    for _, sub in df.groupby(["method", "beta"]):
        expected2 |= {sub.index[p] for p in brute_force_front(sub["kl"].to_numpy(), sub["reward"].to_numpy())}
    assert set(two_keys.index) == expected2


def test_hand_case_overall():
    df = pd.DataFrame(
        {
            "method": ["a", "a", "b", "b", "b", "a"],
            "kl": [1.0, 2.0, 0.5, 2.0, 3.0, 2.0],
            "reward": [1.0, 3.0, 0.0, 2.5, 3.0, 3.0],
        }
    )
    front = pareto_front(df)
    # row 4 (3.0, 3.0) is dominated by row 1 (2.0, 3.0); row 5 duplicates row 1 and comes later
    assert list(front.index) == [2, 0, 1]
    assert list(front["kl"]) == [0.5, 1.0, 2.0]
    per_method = pareto_front(df, group="method")
    assert list(per_method.index) == [0, 1, 2, 3, 4]


def test_duplicates_keep_first_in_input_order():
    df = pd.DataFrame({"kl": [1.0, 1.0, 1.0], "reward": [2.0, 2.0, 2.0], "run": ["x", "y", "z"]})
    assert list(pareto_front(df)["run"]) == ["x"]
    assert list(pareto_front(df.iloc[::-1])["run"]) == ["z"]


def test_equal_x_keeps_only_best_y_and_infinities_are_ordered():
    df = pd.DataFrame({"kl": [0.0, 0.0, np.inf, 5.0], "reward": [-np.inf, 1.0, 9.0, -np.inf]})
    front = pareto_front(df)
    assert list(front.index) == [1, 2]


def test_custom_columns_and_empty_frame():
    df = pd.DataFrame({"seq_kl": [3.0, 1.0], "win_rate": [0.9, 0.5]})
    assert list(pareto_front(df, x="seq_kl", y="win_rate").index) == [1, 0]
    empty = pareto_front(df.iloc[:0], x="seq_kl", y="win_rate")
    assert empty.empty and list(empty.columns) == ["seq_kl", "win_rate"]


def test_nan_is_rejected_naming_row_and_column():
    df = pd.DataFrame({"kl": [1.0, 2.0, 3.0], "reward": [1.0, np.nan, 2.0]}, index=["r0", "r1", "r2"])
    with pytest.raises(ValueError, match=r"'reward'.*'r1'"):
        pareto_front(df)
    df2 = pd.DataFrame({"kl": [1.0, 2.0], "reward": [1.0, 2.0], "method": ["a", None]})
    with pytest.raises(ValueError, match=r"'method'.*row 1"):
        pareto_front(df2, group="method")


def test_bad_columns_are_clear_errors():
    df = pd.DataFrame({"kl": [1.0], "reward": ["high"]})
    with pytest.raises(KeyError, match="missing|not in DataFrame"):
        pareto_front(df, group="method")
    with pytest.raises(TypeError, match="'reward' must be numeric"):
        pareto_front(df)
    with pytest.raises(ValueError, match="equal length"):
        pareto_mask(np.zeros(2), np.zeros(3))


def test_front_value_is_the_upper_concave_hull_read_at_the_budget():
    from sparsepo.experiments.sentiment.pareto import front_value

    x, y = np.array([0.0, 2.0, 6.0, 3.0]), np.array([0.5, 0.7, 0.9, 0.6])
    assert front_value(x, y, 1.0) == pytest.approx(0.6)  # halfway along the segment (0, 0.5)-(2, 0.7)
    assert front_value(x, y, 4.0) == pytest.approx(0.7 + 0.2 * 2 / 4)  # on (2, 0.7)-(6, 0.9); (3, 0.6) is under it
    assert front_value(x, y, 10.0) == pytest.approx(0.9)  # past every point: the best one
    assert np.isnan(front_value(x + 1, y, 0.5))  # nothing within the budget
    # against a brute-force hull: the best mixture of any two points whose KL is at most the budget
    rng = np.random.default_rng(0)
    px, py = rng.uniform(0, 5, 7), rng.uniform(0, 1, 7)
    w = np.linspace(0, 1, 2001)
    for b in (0.5, 1.7, 3.2, 4.9):
        brute = max(((1 - w) * py[i] + w * py[j])[((1 - w) * px[i] + w * px[j]) <= b].max(initial=-np.inf)
                    for i in range(7) for j in range(7))
        assert front_value(px, py, b) == pytest.approx(brute, abs=1e-3)
