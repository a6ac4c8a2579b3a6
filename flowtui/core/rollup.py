"""Hourly and daily roll-ups of the raw probes, retention, and the maths to merge them.

Raw probes and hops are kept for ``[monitor] retention`` (default 30 days);
what they add up to per route and hour (and per route and day) is kept for
``[monitor] rollup_retention`` (default two years) in ``rollup_hourly`` and
``rollup_daily``.

Incremental, never a rescan of history:

- An hour is rolled up once it is closed: its end plus a grace (the longest
  route timeout plus a minute) has passed, so its probes are decided. The
  watermark ``hourly_until`` (in ``rollup_state``) says every hour before it
  is rolled; a step rolls the hours from the watermark on, from the raw rows
  of those hours only.
- A probe that changes after its hour was rolled (a lost probe arriving
  late) has a newer ``updated_at``: each step re-rolls just the hours of
  probes updated since the previous step (indexed on ``updated_at``).
- A day is the merge of its 24 hourly rows (counts add up, histograms merge
  exactly), made once its last hour is rolled.

Percentiles over any window: every row holds, per measure, a log-bucket
histogram (DDSketch-style): a value v > 1 ms falls in bucket
``ceil(log(v / 1ms) / log(gamma))`` with ``gamma = (1 + a) / (1 - a)`` and is
read back as the bucket's centre ``2 * 1ms * gamma**i / (gamma + 1)``, so
every value read back is within a relative error ``a`` (``ALPHA`` = 1 %) of
the true one (values under 1 ms read back as 0, an absolute error under
1 ms). Histograms of hours and days merge by adding bucket counts, so a
percentile over a year is as good as over an hour. Percentiles interpolate
between closest ranks as ``stats.percentile`` does; for positive values the
result is within ``ALPHA`` of the exact percentile of the raw values, and
p0/p100 are exact (min and max are stored). Negative per-hop delays (clock
skew) are kept with their sign.

All writes run on the store's writer thread through ``Store.call``; reads
through ``Store.read`` or a reader connection. Nothing here blocks an event
loop: ``Maintainer.run`` hands each step to a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowtui.core.stats import percentile

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 86400
ALPHA = 0.01  # stated relative error of percentiles read from roll-ups
GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(GAMMA)
MIN_S = 0.001  # |v| under this is bucket 0 (read back as 0)
MAX_HOP_KEYS = 32  # per route and hour: a path that changes all the time cannot grow a row without bound

COUNT_COLUMNS = ("count", "pending", "delivered", "late", "lost", "bounced", "junk", "send_failed", "corrupted")
MEASURES = ("submit", "transit", "total")
ARRIVED_STATES = ("delivered", "late")


# --------------------------------------------------------------------------
# Histograms
# --------------------------------------------------------------------------


def bucket_key(v: float) -> int:
    a = abs(v)
    if a <= MIN_S:
        return 0
    i = max(1, math.ceil(math.log(a / MIN_S) / _LOG_GAMMA))
    return i if v > 0 else -i


def bucket_value(k: int) -> float:
    if k == 0:
        return 0.0
    v = MIN_S * 2 * GAMMA ** abs(k) / (GAMMA + 1)
    return v if k > 0 else -v


@dataclass
class Hist:
    """A mergeable log-bucket histogram with exact count, sum, min and max."""

    buckets: dict[int, int] = field(default_factory=dict)
    n: int = 0
    total: float = 0.0
    lo: float | None = None
    hi: float | None = None

    def add(self, v: float) -> None:
        k = bucket_key(v)
        self.buckets[k] = self.buckets.get(k, 0) + 1
        self.n += 1
        self.total += v
        self.lo = v if self.lo is None or v < self.lo else self.lo
        self.hi = v if self.hi is None or v > self.hi else self.hi

    def merge(self, other: Hist) -> None:
        for k, c in other.buckets.items():
            self.buckets[k] = self.buckets.get(k, 0) + c
        self.n += other.n
        self.total += other.total
        if other.lo is not None:
            self.lo = other.lo if self.lo is None else min(self.lo, other.lo)
        if other.hi is not None:
            self.hi = other.hi if self.hi is None else max(self.hi, other.hi)

    def _at_rank(self, rank: int, keys: list[int]) -> float:
        seen = 0
        for k in keys:
            seen += self.buckets[k]
            if rank < seen:
                return bucket_value(k)
        return bucket_value(keys[-1])

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0..100), interpolated like ``stats.percentile``."""
        if self.n == 0:
            return None
        if p <= 0:
            return self.lo
        if p >= 100:
            return self.hi
        keys = sorted(self.buckets, key=bucket_value)
        rank = (self.n - 1) * p / 100
        lo_r = math.floor(rank)
        frac = rank - lo_r
        a = self._at_rank(lo_r, keys)
        b = self._at_rank(min(lo_r + 1, self.n - 1), keys) if frac else a
        v = a + (b - a) * frac
        assert self.lo is not None and self.hi is not None
        return min(max(v, self.lo), self.hi)

    def to_json(self) -> str:
        return json.dumps({"b": {str(k): c for k, c in self.buckets.items()}, "n": self.n, "s": self.total,
                           "lo": self.lo, "hi": self.hi}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Hist:
        if not text:
            return cls()
        d = json.loads(text)
        return cls({int(k): c for k, c in d["b"].items()}, d["n"], d["s"], d["lo"], d["hi"])


# --------------------------------------------------------------------------
# Aggregates (one route, one span): from raw rows or from roll-up rows
# --------------------------------------------------------------------------


def hop_key(idx: int, by_host: str | None) -> str:
    """How a hop is named across probes: its position and the host that received there."""
    return f"{idx}:{by_host or '?'}"


@dataclass
class Agg:
    """What a set of probes adds up to. Raw probes keep exact values as well, so a
    window made only of raw rows gets exact percentiles; one roll-up row
    merged in makes them estimates (``exact`` False)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_COLUMNS, 0))
    hists: dict[str, Hist] = field(default_factory=lambda: {m: Hist() for m in MEASURES})
    values: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MEASURES})
    hops: dict[str, Hist] = field(default_factory=dict)
    hop_values: dict[str, list[float]] = field(default_factory=dict)
    tls: dict[str, int] = field(default_factory=lambda: {"yes": 0, "no": 0, "unknown": 0})
    alerts_fired: int = 0
    firing_s: float = 0.0
    exact: bool = True
    keep: bool = True  # keep exact values (a report); a roll-up needs the histograms only

    def add_probe(self, state: str, submit: float | None, transit: float | None, total: float | None) -> None:
        self.counts["count"] += 1
        if state in self.counts:
            self.counts[state] += 1
        if submit is not None:
            self._add("submit", submit)
        if state in ARRIVED_STATES:
            if transit is not None:
                self._add("transit", transit)
            if total is not None:
                self._add("total", total)

    def _add(self, measure: str, v: float) -> None:
        self.hists[measure].add(v)
        if self.keep:
            self.values[measure].append(v)

    def add_hop(self, key: str, delay: float | None, tls: int | None) -> None:
        self.tls["unknown" if tls is None else "yes" if tls else "no"] += 1
        if delay is None:
            return
        if key not in self.hops:
            if len(self.hops) >= MAX_HOP_KEYS:
                return
            self.hops[key] = Hist()
            self.hop_values[key] = []
        self.hops[key].add(delay)
        if self.keep:
            self.hop_values[key].append(delay)

    def add_row(self, row: Mapping[str, Any]) -> None:
        """Merge a roll-up row (hourly or daily)."""
        self.exact = False
        for c in COUNT_COLUMNS:
            self.counts[c] += row[c] or 0
        for m in MEASURES:
            self.hists[m].merge(Hist.from_json(row[f"{m}_h"]))
        for key, text in json.loads(row["hops"] or "{}").items():
            h = Hist.from_json(text)
            if key in self.hops:
                self.hops[key].merge(h)
            elif len(self.hops) < MAX_HOP_KEYS:
                self.hops[key] = h
        self.tls["yes"] += row["tls_yes"] or 0
        self.tls["no"] += row["tls_no"] or 0
        self.tls["unknown"] += row["tls_unknown"] or 0
        self.alerts_fired += row["alerts_fired"] or 0
        self.firing_s += row["firing_s"] or 0.0

    def merge(self, other: Agg) -> None:
        self.exact = self.exact and other.exact
        for c in COUNT_COLUMNS:
            self.counts[c] += other.counts[c]
        for m in MEASURES:
            self.hists[m].merge(other.hists[m])
            self.values[m].extend(other.values[m])
        for key, h in other.hops.items():
            if key in self.hops:
                self.hops[key].merge(h)
                self.hop_values.setdefault(key, []).extend(other.hop_values.get(key, []))
            elif len(self.hops) < MAX_HOP_KEYS:
                self.hops[key] = Hist()
                self.hops[key].merge(h)
                self.hop_values[key] = list(other.hop_values.get(key, []))
        for k in self.tls:
            self.tls[k] += other.tls[k]
        self.alerts_fired += other.alerts_fired
        self.firing_s += other.firing_s

    def pct(self, measure: str, p: float) -> float | None:
        if self.exact and self.keep:
            return percentile(self.values[measure], p)
        return self.hists[measure].percentile(p)

    def hop_median(self, key: str) -> float | None:
        if self.exact and self.keep:
            return percentile(self.hop_values.get(key, []), 50)
        return self.hops[key].percentile(50)

    def row(self) -> dict[str, Any]:
        """The roll-up columns (without route and start)."""
        out: dict[str, Any] = dict(self.counts)
        for m in MEASURES:
            out[f"{m}_h"] = self.hists[m].to_json()
        out["hops"] = json.dumps({k: h.to_json() for k, h in self.hops.items()}, separators=(",", ":"))
        out["tls_yes"], out["tls_no"], out["tls_unknown"] = self.tls["yes"], self.tls["no"], self.tls["unknown"]
        out["alerts_fired"] = self.alerts_fired
        out["firing_s"] = self.firing_s
        return out


# --------------------------------------------------------------------------
# Schema (storage's migration v2 calls this)
# --------------------------------------------------------------------------


def _rollup_columns() -> dict[str, type]:
    cols: dict[str, type] = {"route": str, "start": int}
    cols.update(dict.fromkeys(COUNT_COLUMNS, int))
    cols.update({f"{m}_h": str for m in MEASURES})
    cols.update({"hops": str, "tls_yes": int, "tls_no": int, "tls_unknown": int,
                 "alerts_fired": int, "firing_s": float, "rolled_at": float})
    return cols


def migrate_v2(db: Any) -> None:
    """Roll-up tables, their watermarks, and the indexes a step needs (sqlite-utils Database)."""
    for name in ("rollup_hourly", "rollup_daily"):
        db.table(name).create(_rollup_columns(), pk=("route", "start"))
        db.table(name).create_index(["start"], index_name=f"{name}_start")
    db.table("rollup_state").create({"key": str, "value": float}, pk="key")
    db.table("probes").create_index(["sent_at"], index_name="probes_sent")
    db.table("probes").create_index(["updated_at"], index_name="probes_updated")


# --------------------------------------------------------------------------
# Rolling up (on the writer thread, inside its transaction)
# --------------------------------------------------------------------------


def _floor(t: float, step: int) -> int:
    return int(math.floor(t / step) * step)


def get_state(conn: sqlite3.Connection | Any, key: str) -> float | None:
    row = conn.execute("SELECT value FROM rollup_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else row[0]


def _set_state(db: Any, key: str, value: float) -> None:
    db.execute("INSERT INTO rollup_state (key, value) VALUES (?, ?) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


def raw_aggs(conn: Any, since: float, until: float, route: str | None = None,
             step: int = HOUR, keep: bool = True) -> dict[tuple[str, int], Agg]:
    """(route, bucket start) -> Agg over the raw probes sent in [since, until), with hops
    (``keep``: with the exact values too)."""
    where, args = "p.sent_at >= ? AND p.sent_at < ?", [since, until]
    if route is not None:
        where += " AND p.route = ?"
        args.append(route)
    aggs: dict[tuple[str, int], Agg] = defaultdict(lambda: Agg(keep=keep))
    for r, sent, state, sub, tra, tot in conn.execute(
        f"SELECT p.route, p.sent_at, p.state, p.submit_s, p.transit_s, p.total_s FROM probes p WHERE {where}", args
    ):
        aggs[(r, _floor(sent, step))].add_probe(state, sub, tra, tot)
    for r, sent, idx, by_host, delay, tls in conn.execute(
        "SELECT p.route, p.sent_at, h.idx, h.by_host, h.delay_s, h.tls FROM hops h JOIN probes p "
        f"ON p.probe_id = h.probe_id WHERE {where} ORDER BY p.sent_at, h.idx", args
    ):
        aggs[(r, _floor(sent, step))].add_hop(hop_key(idx, by_host), delay, tls)
    return aggs


def raw_alerts(conn: Any, since: float, until: float, now: float, route: str | None = None,
               step: int = HOUR) -> dict[tuple[str, int], tuple[int, float]]:
    """(route, bucket start) -> (alerts fired in it, seconds firing within it) over [since, until)."""
    sql = ("SELECT route, fired_at, resolved_at FROM alerts WHERE route IS NOT NULL AND fired_at < ? "
           "AND (resolved_at IS NULL OR resolved_at > ?)")
    args: list[Any] = [until, since]
    if route is not None:
        sql += " AND route = ?"
        args.append(route)
    out: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0, 0.0])
    for r, fired, resolved in conn.execute(sql, args):
        end = min(resolved if resolved is not None else now, until)
        start = max(fired, since)
        if since <= fired < until:
            out[(r, _floor(fired, step))][0] += 1
        t = start
        while t < end:
            b = _floor(t, step)
            nxt = min(b + step, end)
            out[(r, b)][1] += nxt - t
            t = nxt
    return {k: (int(v[0]), v[1]) for k, v in out.items()}


def _roll_hours(db: Any, start: int, end: int, now: float, routes_hours: set[tuple[str, int]] | None = None) -> set[int]:
    """(Re)write the hourly rows of [start, end) from raw rows; the days touched."""
    aggs = raw_aggs(db, start, end, keep=False)
    for key, (fired, firing) in raw_alerts(db, start, end, now).items():
        aggs[key].alerts_fired += fired
        aggs[key].firing_s += firing
    rows = []
    for (route, hour), agg in aggs.items():
        if routes_hours is not None and (route, hour) not in routes_hours:
            continue
        row = agg.row()
        row.update(route=route, start=hour, rolled_at=now)
        rows.append(row)
    if rows:
        db.table("rollup_hourly").upsert_all(rows, pk=("route", "start"))
    return {_floor(r["start"], DAY) for r in rows}


def _roll_days(db: Any, days: Iterable[int], now: float) -> None:
    for day in sorted(set(days)):
        by_route: dict[str, Agg] = defaultdict(Agg)
        cur = db.execute("SELECT * FROM rollup_hourly WHERE start >= ? AND start < ?", (day, day + DAY))
        names = [d[0] for d in cur.description]
        for values in cur:
            row = dict(zip(names, values))
            by_route[row["route"]].add_row(row)
        rows = []
        for route, agg in by_route.items():
            row = agg.row()
            row.update(route=route, start=day, rolled_at=now)
            rows.append(row)
        if rows:
            db.table("rollup_daily").upsert_all(rows, pk=("route", "start"))


def rollup_step(db: Any, now: float, grace_s: float, max_hours: int = 24 * 7, max_probes: int = 50_000) -> bool:
    """One bounded step of the incremental roll-up (run it on the writer thread:
    ``store.call(lambda db: rollup_step(db, ...))``): at most ``max_hours`` hours
    and, beyond the first hour, about ``max_probes`` probes, so the writer is
    never held long. True when more is to do."""
    closed = _floor(now - grace_s, HOUR)
    until = get_state(db, "hourly_until")
    if until is None:
        first = db.execute("SELECT MIN(sent_at) FROM probes").fetchone()[0]
        until = _floor(first, HOUR) if first is not None else closed
        until = min(until, closed)
    until = int(until)
    days: set[int] = set()
    # Hours already rolled whose probes changed since the last step (lost -> late, ...)
    mark = get_state(db, "updated_mark")
    top = db.execute("SELECT MAX(updated_at) FROM probes").fetchone()[0]
    if mark is not None and top is not None and top > mark:
        # Steps run on the writer thread in queue order, so every write queued
        # before this step is committed and has updated_at <= top.
        changed = {
            (r, _floor(s, HOUR))
            for r, s in db.execute(
                "SELECT route, sent_at FROM probes WHERE updated_at > ? AND sent_at < ?", (mark, until)
            )
        }
        for hour in sorted({h for _, h in changed}):
            days |= _roll_hours(db, hour, hour + HOUR, now, changed)
    if top is not None:
        _set_state(db, "updated_mark", top)
    end = min(closed, until + max_hours * HOUR)
    nth = db.execute("SELECT sent_at FROM probes WHERE sent_at >= ? ORDER BY sent_at LIMIT 1 OFFSET ?",
                     (until, max_probes)).fetchone()
    if nth is not None:  # busy hours: fewer of them per step (at least one)
        end = min(end, max(until + HOUR, _floor(nth[0], HOUR)))
    if end > until:
        days |= _roll_hours(db, until, end, now)
        until = end
        _set_state(db, "hourly_until", until)
    elif get_state(db, "hourly_until") is None:
        _set_state(db, "hourly_until", until)
    # days whose last hour is rolled
    daily_until = get_state(db, "daily_until")
    daily_until = int(daily_until) if daily_until is not None else None
    full_until = _floor(until, DAY)
    if daily_until is None:
        first = db.execute("SELECT MIN(start) FROM rollup_hourly").fetchone()[0]
        daily_until = _floor(first, DAY) if first is not None else full_until
    days = {d for d in days if d < daily_until}  # re-merges of days already made
    days |= set(range(daily_until, full_until, DAY))
    _roll_days(db, days, now)
    if full_until > daily_until or get_state(db, "daily_until") is None:
        _set_state(db, "daily_until", max(full_until, daily_until))
    return until < closed


def prune_rollups(db: Any, older_than: float) -> int:
    n = db.execute("DELETE FROM rollup_hourly WHERE start < ?", (older_than,)).rowcount
    n += db.execute("DELETE FROM rollup_daily WHERE start + ? <= ?", (DAY, older_than)).rowcount
    return n


# --------------------------------------------------------------------------
# Reading roll-ups
# --------------------------------------------------------------------------


def rollup_rows(conn: Any, table: str, since: float, until: float, route: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM {table} WHERE start >= ? AND start < ?"
    args: list[Any] = [since, until]
    if route is not None:
        sql += " AND route = ?"
        args.append(route)
    cur = conn.execute(sql + " ORDER BY route, start", args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, values)) for values in cur]


def covering_rows(conn: Any, since: int, until: int, route: str | None = None) -> list[dict[str, Any]]:
    """Roll-up rows covering [since, until) (hour-aligned): whole days from the daily
    table, the hours at either end from the hourly table."""
    d0 = -(-since // DAY) * DAY  # first whole day
    d1 = _floor(until, DAY)
    if d1 <= d0:
        return rollup_rows(conn, "rollup_hourly", since, until, route)
    rows = rollup_rows(conn, "rollup_hourly", since, d0, route)
    rows += rollup_rows(conn, "rollup_daily", d0, d1, route)
    rows += rollup_rows(conn, "rollup_hourly", d1, until, route)
    return rows


@dataclass(frozen=True, slots=True)
class Split:
    """Which part of a window comes from roll-ups and which from raw rows."""

    rollup_since: float  # hour-aligned when roll-ups are used
    raw_since: float  # roll-ups cover [rollup_since, raw_since), raw rows [raw_since, until)
    until: float

    @property
    def source(self) -> str:
        if self.raw_since <= self.rollup_since:
            return "raw"
        return "rollup" if self.raw_since >= self.until else "rollup+raw"


def split_window(conn: Any, since: float, until: float, now: float, retention_s: float) -> Split:
    """Raw rows where the window is within raw retention (and the raw rows are
    whole); roll-ups before that, up to where they are made."""
    rolled = get_state(conn, "hourly_until")
    raw_from = _floor(now - retention_s, HOUR)
    pruned = get_state(conn, "pruned_before")
    if pruned is not None:
        raw_from = max(raw_from, int(pruned))
    if since >= raw_from or rolled is None:
        return Split(since, since, until)
    cut = min(raw_from, int(rolled))
    start = _floor(since, HOUR)
    if cut <= start:
        return Split(since, since, until)
    return Split(start, min(cut, until), until)


def window_agg(conn: Any, route: str, since: float, until: float, now: float, retention_s: float,
               with_alerts: bool = True) -> tuple[Agg, Split]:
    """One route's Agg over [since, until), from roll-ups and raw rows as ``split_window`` says."""
    split = split_window(conn, since, until, now, retention_s)
    agg = Agg()
    if split.raw_since > split.rollup_since:
        for row in covering_rows(conn, split.rollup_since, _floor(split.raw_since, HOUR), route):
            agg.add_row(row)
    if split.raw_since < until:
        for part in raw_aggs(conn, split.raw_since, until, route, step=10**12).values():
            agg.merge(part)
        if with_alerts:
            for fired, firing in raw_alerts(conn, split.raw_since, until, now, route, step=10**12).values():
                agg.alerts_fired += fired
                agg.firing_s += firing
    return agg, split


def trend_aggs(conn: Any, route: str, split: Split, step: int, now: float) -> dict[int, Agg]:
    """Bucket start -> Agg for the trend of one route (``step`` 3600 or 86400)."""
    out: dict[int, Agg] = defaultdict(Agg)
    if split.raw_since > split.rollup_since:
        end = _floor(split.raw_since, HOUR)
        rows = (rollup_rows(conn, "rollup_hourly", split.rollup_since, end, route) if step == HOUR
                else covering_rows(conn, split.rollup_since, end, route))
        for row in rows:
            out[_floor(row["start"], step)].add_row(row)
    if split.raw_since < split.until:
        for (_, b), agg in raw_aggs(conn, split.raw_since, split.until, route, step=step).items():
            out[b].merge(agg)
        for (_, b), (fired, firing) in raw_alerts(conn, split.raw_since, split.until, now, route, step=step).items():
            out[b].alerts_fired += fired
            out[b].firing_s += firing
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------
# Maintenance: roll up and prune, periodically, off the event loop
# --------------------------------------------------------------------------


class Maintainer:
    """Rolls up closed hours and prunes by retention, for a running monitor.

    ``run_once`` blocks (call it from a thread); each step is one short
    transaction on the store's writer thread, so probe writes interleave.
    ``run`` repeats it every ``interval_s`` off the event loop. Before the
    store is closed: ``stop()`` then ``wait_idle()`` (a step in flight ends first).
    """

    def __init__(self, store: Any, retention_s: float, rollup_retention_s: float, grace_s: float,
                 interval_s: float = 300.0) -> None:
        self.store = store
        self.retention_s = retention_s
        self.rollup_retention_s = rollup_retention_s
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.runs = 0
        self.last: dict[str, int] = {}
        self._halt = threading.Event()
        self._idle = threading.Event()
        self._idle.set()

    @classmethod
    def for_config(cls, store: Any, config: Any, interval_s: float = 300.0) -> Maintainer:
        timeouts = [r.timeout_s for r in config.routes] or [config.monitor.timeout_s]
        return cls(store, config.monitor.retention_s, config.monitor.rollup_retention_s,
                   grace_s=max(timeouts) + 60.0, interval_s=interval_s)

    def stop(self) -> None:
        self._halt.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self._idle.wait(timeout)

    def run_once(self, now: float | None = None) -> dict[str, int]:
        self._idle.clear()
        try:
            return self._run_once(time.time() if now is None else now)
        finally:
            self._idle.set()

    def _run_once(self, now: float) -> dict[str, int]:
        steps = 1
        while self.store.call(lambda db: rollup_step(db, now, self.grace_s)).result():
            if self._halt.is_set():
                return {"steps": steps, "pruned_probes": 0, "pruned_rollups": 0}
            steps += 1
        rolled = self.store.read(lambda c: get_state(c, "hourly_until"))
        cutoff = _floor(now - self.retention_s, HOUR)
        if rolled is not None:
            cutoff = min(cutoff, int(rolled))  # never drop raw rows that are not rolled up yet
        pruned = self.store.prune(cutoff).result()

        def after(db: Any) -> int:
            old = get_state(db, "pruned_before")
            _set_state(db, "pruned_before", max(cutoff, old or cutoff))
            return prune_rollups(db, _floor(now - self.rollup_retention_s, DAY))

        dropped = self.store.call(after).result()
        self.runs += 1
        self.last = {"steps": steps, "pruned_probes": pruned, "pruned_rollups": dropped}
        return self.last

    async def run(self) -> None:
        """Roll up and prune now and every ``interval_s``, until cancelled or stopped."""
        while not self._halt.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except asyncio.CancelledError:
                raise
            except Exception:  # the monitor keeps running; the next round tries again
                log.exception("roll-up and prune failed")
            slept = 0.0
            while slept < self.interval_s and not self._halt.is_set():
                await asyncio.sleep(min(1.0, self.interval_s - slept))
                slept += 1.0
