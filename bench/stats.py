"""The one percentile function the bench scripts report with (nearest rank: the smallest
measured value with at least ``q`` of the values at or below it; never an interpolation
between two measurements)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank ``q``-quantile (``0 < q <= 1``) of ``values``; raises on no values."""
    if not values:
        raise ValueError("no measurements")
    if not 0 < q <= 1:
        raise ValueError(f"quantile {q} is not in (0, 1]")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
