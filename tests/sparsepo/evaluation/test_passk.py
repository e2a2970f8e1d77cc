"""pass@k against brute-force enumeration of every k-subset of the samples."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sparsepo.evaluation.passk import mean_pass_at_k, pass_at_k


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of k-subsets of n samples (the first c correct) containing a correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(samples[i] for i in subset) for subset in subsets)
    return hits / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_matches_binomial_closed_form_for_large_n() -> None:
    # Exact integer binomials as the independent reference; the product form must not overflow.
    for n, c, k in [(200, 3, 100), (200, 0, 1), (100, 37, 10), (1000, 999, 500), (100, 1, 100)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_pass_at_1_is_fraction_correct() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(np.int64(10), np.int64(3), 1) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [(5, 1, 6, "n >= k"), (5, 6, 1, "0 <= c <= n"), (5, -1, 1, "0 <= c <= n"), (5, 1, 0, "k must be >= 1")],
)
def test_pass_at_k_rejects_bad_counts(n: int, c: int, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_pass_at_k_rejects_non_integers() -> None:
    with pytest.raises(TypeError, match="k must be an integer"):
        pass_at_k(5, 1, 1.0)  # type: ignore[arg-type]


def test_mean_pass_at_k_averages_over_problems() -> None:
    results = [(5, 0), (5, 1), (5, 5), (6, 2)]
    got = mean_pass_at_k(results, ks=(1, 3, 5))
    for k in (1, 3, 5):
        expected = sum(brute_force_pass_at_k(n, c, k) for n, c in results) / len(results)
        assert got[k] == pytest.approx(expected, abs=1e-12)
    assert set(got) == {1, 3, 5}


def test_mean_pass_at_k_errors() -> None:
    with pytest.raises(ValueError, match="no problems"):
        mean_pass_at_k([], ks=(1,))
    with pytest.raises(ValueError, match="n >= k"):
        mean_pass_at_k([(10, 1), (3, 1)], ks=(5,))
