"""The statistics of observe/judgement.py: nearest-rank percentiles and the Wilson score bounds of a
binomial share. Pure math, no imports of the package."""
from __future__ import annotations

import math

Z_ONE_SIDED_95 = 1.6448536269514722         # the 95 % one-sided normal quantile used by the Wilson bound


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (the smallest value with at least p % of the values at or below
    it); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _wilson(failed: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of ``failed`` of ``n`` (n > 0) at ``z``: (lower, upper), unclipped."""
    p = failed / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre - spread) / (1 + z2 / n), (centre + spread) / (1 + z2 / n)


def wilson_lower(failed: int, n: int, z: float = Z_ONE_SIDED_95) -> float:
    """The lower end of the Wilson score interval of a binomial share (one-sided at ``z``): the failure share
    is above this with ~95 % confidence. 0 for no trials."""
    return max(0.0, _wilson(failed, n, z)[0]) if n > 0 else 0.0


def wilson_upper(failed: int, n: int, z: float = Z_ONE_SIDED_95) -> float:
    """The upper end of the same interval (1 for no trials)."""
    return min(1.0, _wilson(failed, n, z)[1]) if n > 0 else 1.0
