"""Statistics at the passage level. The questions of one passage share one adapter (or one
retrieval), so they are not independent: intervals resample passages (a cluster bootstrap),
and paired arms are compared by flipping the sign of each passage's difference.

Plain Python, no torch: the benchmarks of the CLI use it beside the research code."""

from __future__ import annotations

import random
from collections.abc import Sequence

#: Draws of each bootstrap, and of each permutation test.
DRAWS = 2000
FLIPS = 5000


def _quantiles(values: list[float]) -> tuple[float, float]:
    values.sort()
    return values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]


def share(
    right: Sequence[float], sizes: Sequence[int], rng: random.Random
) -> tuple[float, float, float]:
    """The share of all questions answered (``right[i]`` of passage ``i``'s ``sizes[i]``),
    and its 95% cluster-bootstrap interval over passages."""
    n = len(right)
    if not n or not sum(sizes):
        return 0.0, 0.0, 0.0
    boots = []
    for _ in range(DRAWS):
        pick = [rng.randrange(n) for _ in range(n)]
        boots.append(sum(right[i] for i in pick) / max(1, sum(sizes[i] for i in pick)))
    lo, hi = _quantiles(boots)
    return sum(right) / sum(sizes), lo, hi


def ratio(
    first: Sequence[float], second: Sequence[float], rng: random.Random
) -> tuple[float, float, float]:
    """``sum(first) / sum(second)`` over the same passages (two arms' right answers), and its
    95% cluster-bootstrap interval; ``inf`` where the second answered nothing."""
    n = len(first)

    def of(pick: Sequence[int]) -> float:
        below = sum(second[i] for i in pick)
        return sum(first[i] for i in pick) / below if below else float("inf")

    if not n:
        return 0.0, 0.0, 0.0
    boots = [of([rng.randrange(n) for _ in range(n)]) for _ in range(DRAWS)]
    lo, hi = _quantiles(boots)
    return of(range(n)), lo, hi


def paired(
    diffs: Sequence[float], sizes: Sequence[int], rng: random.Random
) -> tuple[float, float, float, float]:
    """Two arms on the same passages: ``diffs[i]``, the first's right answers minus the
    second's on passage ``i``. The difference as a share of all questions, its 95%
    cluster-bootstrap interval, and a two-sided sign-flip permutation p."""
    n = len(diffs)
    if not n:
        return 0.0, 0.0, 0.0, 1.0
    boots = []
    for _ in range(DRAWS):
        pick = [rng.randrange(n) for _ in range(n)]
        boots.append(sum(diffs[i] for i in pick) / max(1, sum(sizes[i] for i in pick)))
    lo, hi = _quantiles(boots)
    observed = abs(sum(diffs))
    flips = sum(
        abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed - 1e-9
        for _ in range(FLIPS)
    )
    return sum(diffs) / max(1, sum(sizes)), lo, hi, flips / FLIPS
