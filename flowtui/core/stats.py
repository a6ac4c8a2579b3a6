"""Window statistics, percentiles and text sparklines (pure: no I/O, no UI).

The sparkline is rendered here as plain text, not with Textual's
``Sparkline``: that widget scales each instance to its own min..max and has
no way to show a lost probe. Here the ceiling is a parameter, so every route
on the wall screen can share one scale, and a lost probe has its own glyph.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flowtui.core.model import FAILED, ProbeResult, ProbeState

# The eight block glyphs, lowest first.
SPARK_GLYPHS = "▁▂▃▄▅▆▇█"
# A lost probe (a None value). U+2715 MULTIPLICATION X: one cell wide in
# every terminal (East Asian Width "N"), unlike the middle dot (ambiguous).
LOST_GLYPH = "✕"
# Padding on the left when there are fewer values than cells.
EMPTY_CELL = " "

# States whose total_s is a real delivery time and so counts in percentiles.
ARRIVED = frozenset({ProbeState.DELIVERED, ProbeState.LATE})


def percentile(values: Iterable[float], p: float) -> float | None:
    """The ``p``-th percentile (0..100) of ``values``, or None when empty.

    Linear interpolation between closest ranks: the sorted values sit at
    ranks 0..n-1, the percentile is read at rank ``(n - 1) * p / 100`` and
    interpolated between its two neighbours. This is numpy's default
    ("linear") and ``statistics.quantiles(method="inclusive")``; p=0 is the
    minimum, p=100 the maximum, p=50 the median.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile p must be within 0..100, got {p!r}")
    data = sorted(values)
    if not data:
        return None
    rank = (len(data) - 1) * p / 100
    lo = math.floor(rank)
    hi = min(lo + 1, len(data) - 1)
    frac = rank - lo
    if frac == 0 or lo == hi:
        return float(data[lo])
    return data[lo] + (data[hi] - data[lo]) * frac


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What the probes of one route in one time window add up to.

    - ``count``: every probe sent in the window, whatever its state.
    - ``pending``: sent and not decided yet; left out of the ratios.
    - ``delivered``, ``lost``, ``late``: probes in that state now (a probe
      that was lost and then arrived counts as ``late``, not ``lost``).
    - ``failed``: lost, bounced, send_failed, corrupted or junk.
    - ``loss_ratio``: lost / decided (decided = count - pending), 0..1;
      None when nothing is decided. ``loss_pct`` is the same in percent.
    - ``p50``/``p95``/``p99``: percentiles of ``total_s`` over the probes
      that arrived (delivered and late), None when there are none.
    """

    count: int = 0
    pending: int = 0
    delivered: int = 0
    lost: int = 0
    late: int = 0
    failed: int = 0
    loss_ratio: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None

    @property
    def decided(self) -> int:
        return self.count - self.pending

    @property
    def loss_pct(self) -> float | None:
        return None if self.loss_ratio is None else self.loss_ratio * 100

    @classmethod
    def from_results(cls, results: Iterable[ProbeResult]) -> WindowStats:
        """Stats over ``results`` (only ``state`` and ``total_s`` are read)."""
        return cls.from_pairs((r.state, r.total_s) for r in results)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, float | None]]) -> WindowStats:
        """Stats over (state, total_s) pairs, e.g. straight from the store's rows."""
        counts = {state: 0 for state in ProbeState}
        totals: list[float] = []
        count = 0
        for raw_state, total in pairs:
            state = ProbeState(raw_state)
            count += 1
            counts[state] += 1
            if state in ARRIVED and total is not None:
                totals.append(total)
        pending = counts[ProbeState.PENDING]
        decided = count - pending
        return cls(
            count=count,
            pending=pending,
            delivered=counts[ProbeState.DELIVERED],
            lost=counts[ProbeState.LOST],
            late=counts[ProbeState.LATE],
            failed=sum(counts[s] for s in FAILED),
            loss_ratio=(counts[ProbeState.LOST] / decided) if decided else None,
            p50=percentile(totals, 50),
            p95=percentile(totals, 95),
            p99=percentile(totals, 99),
        )

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "pending": self.pending,
            "delivered": self.delivered,
            "lost": self.lost,
            "late": self.late,
            "failed": self.failed,
            "loss_ratio": self.loss_ratio,
            "loss_pct": self.loss_pct,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
        }


def spark_cells(values: Sequence[float | None], ceiling: float, width: int) -> str:
    """Render ``values`` (oldest first) as a sparkline exactly ``width`` cells wide.

    - Only the newest ``width`` values are drawn; with fewer values the line
      is right-aligned and padded with spaces on the left, so the newest
      probe is always the right-most cell.
    - A value v in [0, ceiling) takes glyph ``▁▂▃▄▅▆▇█``[floor(8 * v / ceiling)];
      v >= ceiling (and +inf) is ``█``, clipped; a negative value is ``▁``.
      0 is ``▁``, not blank: a delivered probe always shows.
    - None (a lost probe) and NaN are ``✕`` (``LOST_GLYPH``).
    - ``ceiling`` is fixed by the caller (e.g. the route's crit threshold or a
      ceiling shared by all routes); it is never derived from the values.
    """
    if not (ceiling > 0 and math.isfinite(ceiling)):
        raise ValueError(f"ceiling must be a positive finite number, got {ceiling!r}")
    if width <= 0:
        return ""
    shown = list(values[-width:])
    cells = [EMPTY_CELL] * (width - len(shown))
    top = len(SPARK_GLYPHS) - 1
    for value in shown:
        if value is None or math.isnan(value):
            cells.append(LOST_GLYPH)
        elif value >= ceiling:
            cells.append(SPARK_GLYPHS[top])
        elif value <= 0:
            cells.append(SPARK_GLYPHS[0])
        else:
            cells.append(SPARK_GLYPHS[min(top, int(value / ceiling * len(SPARK_GLYPHS)))])
    return "".join(cells)
