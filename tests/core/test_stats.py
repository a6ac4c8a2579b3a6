"""Percentiles, window stats and text sparklines (flowtui.core.stats)."""

from __future__ import annotations

import random
import statistics

import pytest

from flowtui.core.model import ProbeResult, ProbeState
from flowtui.core.stats import LOST_GLYPH, SPARK_GLYPHS, WindowStats, percentile, spark_cells


# --- percentile -------------------------------------------------------------


def test_percentile_hand_values() -> None:
    data = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(data, 0) == 15.0
    assert percentile(data, 100) == 50.0
    assert percentile(data, 50) == 35.0
    # rank (5-1)*0.4 = 1.6 -> 20 + 0.6*(35-20) = 29
    assert percentile(data, 40) == pytest.approx(29.0)
    # rank 4*0.95 = 3.8 -> 40 + 0.8*10 = 48
    assert percentile(data, 95) == pytest.approx(48.0)
    # order of the input does not matter
    assert percentile(reversed(data), 40) == pytest.approx(29.0)


def test_percentile_empty_and_single() -> None:
    assert percentile([], 50) is None
    assert percentile([7.5], 0) == 7.5
    assert percentile([7.5], 99) == 7.5


def test_percentile_rejects_p_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        percentile([1.0], -1)


def test_percentile_matches_statistics_quantiles_inclusive() -> None:
    rng = random.Random(1234)
    for n in (2, 3, 10, 57, 400):
        data = [rng.expovariate(1 / 20) for _ in range(n)]
        cuts = statistics.quantiles(data, n=100, method="inclusive")
        for p in range(1, 100):
            assert percentile(data, p) == pytest.approx(cuts[p - 1], rel=1e-12, abs=1e-12)


# --- WindowStats ------------------------------------------------------------


def _r(i: int, state: ProbeState, total: float | None) -> ProbeResult:
    return ProbeResult(route="r", probe_id=f"p{i}", seq=i, state=state, sent_at=1000.0 + i, total_s=total)


def test_window_stats_counts_ratio_and_percentiles() -> None:
    results = [
        _r(1, ProbeState.DELIVERED, 10.0),
        _r(2, ProbeState.DELIVERED, 20.0),
        _r(3, ProbeState.DELIVERED, 30.0),
        _r(4, ProbeState.LATE, 900.0),
        _r(5, ProbeState.LOST, None),
        _r(6, ProbeState.BOUNCED, None),
        _r(7, ProbeState.PENDING, None),
        _r(8, ProbeState.JUNK, 12.0),  # arrived in Junk: not a delivery time
    ]
    ws = WindowStats.from_results(results)
    assert (ws.count, ws.pending, ws.decided) == (8, 1, 7)
    assert (ws.delivered, ws.lost, ws.late) == (3, 1, 1)
    assert ws.failed == 3  # lost, bounced, junk
    assert ws.loss_ratio == pytest.approx(1 / 7)
    assert ws.loss_pct == pytest.approx(100 / 7)
    arrived = [10.0, 20.0, 30.0, 900.0]
    assert ws.p50 == pytest.approx(statistics.median(arrived))
    assert ws.p95 == percentile(arrived, 95)
    assert ws.p99 == percentile(arrived, 99)
    assert ws.as_dict()["loss_ratio"] == ws.loss_ratio


def test_window_stats_empty_and_all_pending() -> None:
    empty = WindowStats.from_results([])
    assert empty.count == 0 and empty.loss_ratio is None and empty.p50 is None and empty.loss_pct is None
    pending = WindowStats.from_results([_r(1, ProbeState.PENDING, None)])
    assert pending.count == 1 and pending.loss_ratio is None


# --- spark_cells ------------------------------------------------------------


def test_spark_cells_length_is_always_width() -> None:
    for n in (0, 1, 5, 10, 11, 100):
        values = [float(i) for i in range(n)]
        assert len(spark_cells(values, ceiling=10.0, width=10)) == 10
    assert spark_cells([1.0, 2.0], ceiling=10.0, width=0) == ""


def test_spark_cells_empty_input_is_blank() -> None:
    assert spark_cells([], ceiling=5.0, width=4) == "    "


def test_spark_cells_levels_and_fixed_ceiling() -> None:
    # eight values at the bottom of each eighth of the ceiling: one glyph each
    values = [i * 1.0 for i in range(8)]
    assert spark_cells(values, ceiling=8.0, width=8) == SPARK_GLYPHS
    # the ceiling is not derived from the data: small values stay small
    assert spark_cells([0.1, 0.2, 0.3], ceiling=100.0, width=3) == "▁▁▁"


def test_spark_cells_clips_above_ceiling_and_negative() -> None:
    assert spark_cells([10.0, 11.0, 1e9, float("inf")], ceiling=10.0, width=4) == "████"
    assert spark_cells([-3.0, 0.0], ceiling=10.0, width=2) == "▁▁"


def test_spark_cells_lost_probe_has_its_own_glyph() -> None:
    out = spark_cells([1.0, None, 9.0, float("nan")], ceiling=10.0, width=4)
    assert out == "▁" + LOST_GLYPH + "█" + LOST_GLYPH
    assert LOST_GLYPH not in SPARK_GLYPHS and LOST_GLYPH.strip()


def test_spark_cells_newest_values_right_aligned() -> None:
    # fewer values: padded on the left, newest last
    assert spark_cells([None], ceiling=1.0, width=3) == "  " + LOST_GLYPH
    # more values: only the newest width are kept
    assert spark_cells([None, None, 0.0, 0.0], ceiling=1.0, width=2) == "▁▁"


def test_spark_cells_rejects_bad_ceiling() -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            spark_cells([1.0], ceiling=bad, width=3)
