"""Unbiased pass@k estimator (Chen et al., 2021) from ``n`` samples of which ``c`` are correct.

pass@k = 1 - C(n - c, k) / C(n, k): the probability that a random k-subset of the n samples
contains at least one correct one. The binomial ratio is evaluated as a product so that n = 200,
k = 100 stays exact to float precision instead of overflowing.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence


def _as_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise TypeError(f"pass@k: {name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # accepts numpy integers, rejects floats
    except TypeError:
        raise TypeError(f"pass@k: {name} must be an integer, got {value!r}") from None


def _check_counts(n: int, c: int, k: int) -> None:
    if k < 1:
        raise ValueError(f"pass@k: k must be >= 1, got k={k}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: need 0 <= c <= n, got n={n}, c={c}")
    if n < k:
        raise ValueError(f"pass@k: need n >= k samples, got n={n}, k={k}; draw more samples or drop k={k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k in [0, 1] for one problem with ``n`` samples, ``c`` of them correct.

    Raises ValueError unless 1 <= k <= n and 0 <= c <= n.
    """
    n, c, k = _as_int("n", n), _as_int("c", c), _as_int("k", k)
    _check_counts(n, c, k)
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


def mean_pass_at_k(results: Iterable[tuple[int, int]], ks: Sequence[int]) -> dict[int, float]:
    """Mean over problems of :func:`pass_at_k` for each k.

    ``results`` holds one ``(n, c)`` pair per problem. Returns ``{k: mean pass@k in [0, 1]}``.
    Raises ValueError if there are no problems or some problem has fewer than k samples.
    """
    pairs = list(results)
    if not pairs:
        raise ValueError("mean_pass_at_k: no problems given")
    out: dict[int, float] = {}
    for k in ks:
        out[k] = sum(pass_at_k(n, c, k) for n, c in pairs) / len(pairs)
    return out
