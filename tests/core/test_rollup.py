"""Roll-ups over a year of synthetic probes (issue 7), checked against values
computed here, independently, from the probes the test generated."""

from __future__ import annotations

import math
import random
import sqlite3
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from exact import exact_pct

from flowtui.core.model import Hop, ProbeResult, ProbeState
from flowtui.core.rollup import ALPHA, DAY, HOUR, MIN_S, Hist, Maintainer, get_state, window_agg
from flowtui.core.storage import Store

NOW = 1_796_000_000.0  # a fixed "now" (2026-11-29), not aligned to an hour
YEAR = 365 * DAY
STEP = 1200  # one probe per route every 20 minutes
ROUTES = ("alpha", "beta <b>&amp;")
HOSTS = ("relay1.lab.test", "mx.lab.test")




def close(est, exact, alpha=ALPHA):
    if exact is None:
        return est is None
    return abs(est - exact) <= alpha * abs(exact) + MIN_S  # the stated bound: 1 %, or 1 ms under 1 ms


def synthetic(seed=7):
    """A year of probes for each route: (ProbeResult, ...) plus a plain record for the checks."""
    rnd = random.Random(seed)
    out = []
    seq = defaultdict(int)
    t0 = NOW - YEAR
    n = int(YEAR // STEP)
    for route in ROUTES:
        slow = 3.0 if route == "alpha" else 0.7
        for i in range(n):
            sent = t0 + i * STEP + rnd.uniform(0, 60)
            seq[route] += 1
            u = rnd.random()
            state = (ProbeState.DELIVERED if u < 0.93 else ProbeState.LOST if u < 0.95 else ProbeState.LATE
                     if u < 0.96 else ProbeState.BOUNCED if u < 0.97 else ProbeState.JUNK if u < 0.98
                     else ProbeState.SEND_FAILED if u < 0.99 else ProbeState.PENDING)
            submit = None if state is ProbeState.SEND_FAILED else rnd.lognormvariate(-1.5, 0.4)
            hops: tuple[Hop, ...] = ()
            transit = total = None
            if state in (ProbeState.DELIVERED, ProbeState.LATE, ProbeState.JUNK):
                d1 = round(rnd.lognormvariate(0, 0.5), 0)  # Received times: whole seconds
                d2 = round(rnd.lognormvariate(math.log(slow), 0.6), 0) - (1 if rnd.random() < 0.01 else 0)
                transit = rnd.lognormvariate(math.log(2 + slow), 0.5)
                if state is ProbeState.LATE:
                    transit += 700
                total = submit + transit
                ts = datetime.fromtimestamp(int(sent), timezone.utc)
                hops = (
                    Hop(index=0, by_host="submit.lab.test", tls=True, timestamp=ts),
                    Hop(index=1, by_host=HOSTS[0], tls=True, timestamp=ts + timedelta(seconds=d1), delay_s=d1),
                    Hop(index=2, by_host=HOSTS[1], tls=rnd.random() < 0.9 or None,
                        timestamp=ts + timedelta(seconds=d1 + d2), delay_s=d2),
                )
            r = ProbeResult(route=route, probe_id=f"{route}-{i}", seq=seq[route], state=state, sent_at=sent,
                            submit_s=submit, transit_s=transit, total_s=total, hops=hops)
            out.append(r)
    return out


@pytest.fixture(scope="module")
def year_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("year") / "year.db"
    results = synthetic()
    with Store(path, batch_size=5000) as store:
        for r in results:
            store.write_result(r)
        store.flush_sync()
        m = Maintainer(store, retention_s=30 * DAY, rollup_retention_s=730 * DAY, grace_s=660)
        first = m.run_once(now=NOW)
    return path, results, first


def expected(results, since, until, route):
    sel = [r for r in results if r.route == route and since <= r.sent_at < until]
    arrived = [r for r in sel if r.state in (ProbeState.DELIVERED, ProbeState.LATE)]
    hops = defaultdict(list)
    tls = defaultdict(int)
    for r in sel:
        for h in r.hops:
            tls["unknown" if h.tls is None else "yes" if h.tls else "no"] += 1
            if h.delay_s is not None:
                hops[f"{h.index}:{h.by_host}"].append(h.delay_s)
    return {
        "count": len(sel),
        "states": {s.value: sum(1 for r in sel if r.state is s) for s in ProbeState},
        "submit": [r.submit_s for r in sel if r.submit_s is not None],
        "transit": [r.transit_s for r in arrived],
        "total": [r.total_s for r in arrived],
        "hops": hops,
        "tls": dict(tls),
    }


def check_agg(agg, exp):
    assert agg.counts["count"] == exp["count"]
    for state in ("delivered", "late", "lost", "bounced", "junk", "send_failed", "pending"):
        assert agg.counts[state] == exp["states"][state], state
    for m in ("submit", "transit", "total"):
        for p in (50, 90, 99):
            want = exact_pct(exp[m], p)
            got = agg.pct(m, p)
            assert close(got, want), (m, p, got, want)
        assert agg.pct(m, 100) == pytest.approx(max(exp[m]) if exp[m] else None)
    for key, delays in exp["hops"].items():
        assert close(agg.hop_median(key), exact_pct(delays, 50)), key
    for k, v in exp["tls"].items():
        assert agg.tls[k] == v


def test_first_run_rolls_up_every_closed_hour_and_prunes_raw_rows_by_retention(year_db):
    path, results, first = year_db
    conn = sqlite3.connect(path)
    closed = int((NOW - 660) // HOUR * HOUR)
    assert get_state(conn, "hourly_until") == closed
    assert get_state(conn, "daily_until") == closed // DAY * DAY
    cutoff = int((NOW - 30 * DAY) // HOUR * HOUR)
    assert conn.execute("SELECT MIN(sent_at) FROM probes").fetchone()[0] >= cutoff
    assert first["pruned_probes"] == sum(1 for r in results if r.sent_at < cutoff)
    assert conn.execute("SELECT COUNT(*) FROM hops h LEFT JOIN probes p USING (probe_id) "
                        "WHERE p.probe_id IS NULL").fetchone()[0] == 0
    # one row per route and hour with probes, none for the open hour
    hours = {(r.route, int(r.sent_at // HOUR * HOUR)) for r in results if r.sent_at < closed}
    assert conn.execute("SELECT COUNT(*) FROM rollup_hourly").fetchone()[0] == len(hours)
    assert conn.execute("SELECT MAX(start) FROM rollup_hourly").fetchone()[0] < closed


def test_hourly_and_daily_rows_match_the_probes_of_that_hour_and_day(year_db):
    path, results, _ = year_db
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    from flowtui.core.rollup import Agg

    rnd = random.Random(3)
    base = int((NOW - 300 * DAY) // DAY * DAY)
    for _ in range(5):
        hour = base + rnd.randrange(0, 200 * 24) * HOUR
        for route in ROUTES:
            row = conn.execute("SELECT * FROM rollup_hourly WHERE route = ? AND start = ?", (route, hour)).fetchone()
            agg = Agg()
            agg.add_row(dict(row))
            check_agg(agg, expected(results, hour, hour + HOUR, route))
    day = base + 17 * DAY
    for route in ROUTES:
        row = conn.execute("SELECT * FROM rollup_daily WHERE route = ? AND start = ?", (route, day)).fetchone()
        agg = Agg()
        agg.add_row(dict(row))
        check_agg(agg, expected(results, day, day + DAY, route))
        hourly = conn.execute("SELECT SUM(count), SUM(lost), SUM(tls_yes) FROM rollup_hourly WHERE route = ? "
                              "AND start >= ? AND start < ?", (route, day, day + DAY)).fetchone()
        assert tuple(hourly) == (row["count"], row["lost"], row["tls_yes"])


@pytest.mark.parametrize("days", [365, 90, 7])
def test_percentiles_over_long_windows_from_rollups_are_within_the_stated_error(year_db, days):
    path, results, _ = year_db
    conn = sqlite3.connect(path)
    since, until = NOW - days * DAY, NOW
    for route in ROUTES:
        agg, split = window_agg(conn, route, since, until, NOW, 30 * DAY)
        # beyond raw retention the whole window is roll-ups then raw; within, raw only (exact)
        assert split.source == ("raw" if days <= 30 else "rollup+raw")
        aligned = split.rollup_since if split.source != "raw" else since
        check_agg(agg, expected(results, aligned, until, route))
        if split.source == "raw":
            exp = expected(results, since, until, route)
            assert agg.pct("total", 90) == exact_pct(exp["total"], 90)  # raw: exact, not estimated


def test_a_probe_changed_after_its_hour_was_rolled_is_rolled_again_and_nothing_else(year_db, tmp_path):
    import shutil

    path, results, _ = year_db
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    with Store(copy) as store:
        lost = next(r for r in results if r.state is ProbeState.LOST and r.sent_at > NOW - 5 * DAY)
        hour = int(lost.sent_at // HOUR * HOUR)
        conn = sqlite3.connect(copy)
        before = dict(conn.execute("SELECT start, rolled_at FROM rollup_hourly WHERE route = ?", (lost.route,)))
        lost_before, late_before = conn.execute("SELECT lost, late FROM rollup_hourly WHERE route = ? AND start = ?",
                                                (lost.route, hour)).fetchone()
        import dataclasses

        store.write_result(dataclasses.replace(lost, state=ProbeState.LATE, transit_s=900.0, total_s=901.0))
        store.flush_sync()
        m = Maintainer(store, retention_s=30 * DAY, rollup_retention_s=730 * DAY, grace_s=660)
        m.run_once(now=NOW + 1)
        after = dict(conn.execute("SELECT start, rolled_at FROM rollup_hourly WHERE route = ?", (lost.route,)))
        assert conn.execute("SELECT lost, late FROM rollup_hourly WHERE route = ? AND start = ?",
                            (lost.route, hour)).fetchone() == (lost_before - 1, late_before + 1)
        changed = {h for h in after if after[h] != before.get(h)}
        assert changed == {hour}  # just the one hour, not a rescan
        day = hour // DAY * DAY
        assert conn.execute("SELECT late FROM rollup_daily WHERE route = ? AND start = ?", (lost.route, day)
                            ).fetchone()[0] == conn.execute(
            "SELECT SUM(late) FROM rollup_hourly WHERE route = ? AND start >= ? AND start < ?",
            (lost.route, day, day + DAY)).fetchone()[0]


def test_rollups_older_than_their_retention_are_dropped(year_db, tmp_path):
    import shutil

    path, _, _ = year_db
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    with Store(copy) as store:
        Maintainer(store, retention_s=30 * DAY, rollup_retention_s=100 * DAY, grace_s=660).run_once(now=NOW)
    conn = sqlite3.connect(copy)
    oldest = conn.execute("SELECT MIN(start) FROM rollup_hourly").fetchone()[0]
    assert oldest >= (NOW - 100 * DAY) // DAY * DAY
    assert conn.execute("SELECT MIN(start) FROM rollup_daily").fetchone()[0] >= (NOW - 100 * DAY) // DAY * DAY - DAY


def test_histogram_reads_back_every_value_within_alpha():
    rnd = random.Random(1)
    for _ in range(2000):
        v = rnd.lognormvariate(0, 3)
        h = Hist()
        h.add(v)
        h.add(v * 2)
        assert close(h.percentile(25), exact_pct([v, v * 2], 25))
    h = Hist()
    for v in (-2.0, 0.0, 0.0005, 1.0, 3.0):
        h.add(v)
    assert h.percentile(0) == -2.0 and h.percentile(100) == 3.0
    assert h.percentile(50) == pytest.approx(0.0, abs=0.001)
    again = Hist.from_json(h.to_json())
    assert again == h


def test_a_step_is_bounded_by_probes_and_the_result_is_the_same(year_db, tmp_path):
    """Small steps (a few hundred probes each) give the same roll-ups as week-long ones."""
    from sqlite_utils import Database

    from flowtui.core.rollup import rollup_step

    path, results, _ = year_db
    db = tmp_path / "small.db"
    with Store(db) as store:
        for r in results:
            if r.sent_at >= NOW - 20 * DAY:
                store.write_result(r)
    conn = sqlite3.connect(db)
    d = Database(conn)
    steps = 1
    while rollup_step(d, NOW, 660, max_probes=300):
        steps += 1
    conn.commit()
    assert steps > 20 * 24 * 2 * 3 // 300 // 2  # many small steps, not one per week
    big = sqlite3.connect(path)
    since = (NOW - 20 * DAY) // HOUR * HOUR + HOUR
    q = "SELECT route, start, count, lost, total_h, hops FROM rollup_hourly WHERE start >= ? ORDER BY route, start"
    assert conn.execute(q, (since,)).fetchall() == big.execute(q, (since,)).fetchall()
