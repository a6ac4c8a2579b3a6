"""An independent percentile for tests that check flowtui's own."""

from __future__ import annotations

import math


def exact_pct(values, p):
    """numpy's "linear" percentile, written out here so the tests do not use the code they check."""
    data = sorted(values)
    if not data:
        return None
    rank = (len(data) - 1) * p / 100
    lo = int(math.floor(rank))
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)
