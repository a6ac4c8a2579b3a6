"""store: the SQLite store at monitoring scale, written by the Store's own code.

The probes are copies of one real probe (sent through the embedded lab: its
hops, phases and ids as the engine writes them), each with its own id, route,
sequence number, send time and total. 1,000 routes, one probe a minute each,
so 10 million probes are about a week of history. Every probe goes through
``Store.write_result`` (its queue, its batching writer, its schema).
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from common import at_most, line, log

from flowtui.core.config import load_config
from flowtui.core.engine import Engine
from flowtui.core.events import EventBus
from flowtui.core.model import ProbeState
from flowtui.core.storage import Store
from flowtui.lab.embedded import EmbeddedLab

ROUTES = 1000
DAY = 86400.0


async def _template(d: Path):
    async with await EmbeddedLab.start(d / "lab", hops=2):
        config = load_config(d / "lab" / "lab.toml")
        config = replace(config, monitor=replace(config.monitor, database=str(d / "lab" / "t.db")))
        store = Store(config.monitor.database)
        engine = Engine(config, store, EventBus())
        try:
            await engine.start(schedule=False)
            await engine.wait_ready(15)
            return await engine.probe_once(config.routes[0], 15)
        finally:
            await engine.stop()
            store.close()


def run(quick: bool) -> list[dict]:
    wanted = 10_000_000 if not quick else 1_000_000
    budget_s = 4.0 if quick else 200.0  # writing stops here; the rest is extrapolated
    with tempfile.TemporaryDirectory(prefix="flowtui-bench-store-") as d:
        d = Path(d)
        tpl = asyncio.run(_template(d))
        assert tpl.state is ProbeState.DELIVERED, tpl
        names = [f"route-{i:04d}" for i in range(ROUTES)]
        path = d / "store.db"
        store = Store(path)
        end = 1_700_000_000.0 + wanted / ROUTES * 60  # the newest probe's send time
        rng = random.Random(4)
        written = 0
        t0 = time.perf_counter()
        deadline = t0 + budget_s
        minute = 0
        while written < wanted and time.perf_counter() < deadline:
            base = end - (wanted / ROUTES - minute) * 60  # oldest minute first, like real history
            for i, name in enumerate(names):
                total = rng.lognormvariate(0.0, 0.5)
                store.write_result(replace(
                    tpl, route=name, probe_id=f"{minute:07d}{i:04d}{rng.getrandbits(40):010x}", seq=minute + 1,
                    sent_at=base + i * 0.06, total_s=total, transit_s=total - 0.05,
                    detected_at=base + i * 0.06 + total, message_id=f"<{minute}.{i}@bench.flowtui>",
                ))
            written += ROUTES
            minute += 1
        store.flush_sync()
        elapsed = time.perf_counter() - t0
        rate = written / elapsed
        log(f"store: {written} probes in {elapsed:.1f}s ({rate:.0f}/s, {store.commits} commits)")
        store.close()
        # steady size: checkpoint the WAL into the file
        import sqlite3

        c = sqlite3.connect(path)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        hops = c.execute("SELECT COUNT(*) FROM hops").fetchone()[0]
        c.close()
        size = sum(os.path.getsize(p) for p in d.glob("store.db*"))
        per_probe = size / written

        newest = end - (wanted / ROUTES - minute) * 60 + ROUTES * 0.06
        since = newest - DAY
        store = Store(path)
        try:
            times = []
            for name in rng.sample(names, 50):
                t = time.perf_counter()
                got = store.last_probes(name, 60)
                times.append(time.perf_counter() - t)
                assert len(got) == min(60, minute)
            times.sort()
            last60_ms = times[len(times) // 2] * 1000
            last60_max = times[-1] * 1000

            def all_routes():
                return {name: store.window_stats(name, since) for name in names}

            def timed(since_at):
                t = time.perf_counter()
                stats = {name: store.window_stats(name, since_at) for name in names}
                return time.perf_counter() - t, sum(s["count"] for s in stats.values())

            timed(since)  # warm the page cache once, as a running monitor has it
            window_s, in_window = timed(since)
            # a second, half-size window: fixed cost per route + cost per probe, for extrapolating
            half_s, in_half = timed(newest - min(DAY, (minute * 60)) / 2)
        finally:
            store.close()
    full_window = ROUTES * 1440  # probes in 24 h at one a minute per route
    extrapolated = written < wanted
    scale_note = (f"{written:,} probes written in the {budget_s:g} s budget ({wanted:,} wanted): "
                  f"rate measured on these; " if extrapolated else f"{written:,} probes; ")
    win_val, win_note = window_s, f"{in_window:,} probes in the window, window_stats for each of {ROUTES} routes"
    if in_window < full_window:
        per_probe_s = max(window_s - half_s, 0.0) / max(in_window - in_half, 1)
        win_val = window_s + per_probe_s * (full_window - in_window)
        win_note += (f"; measured {window_s * 1000:.0f} ms ({half_s * 1000:.0f} ms for {in_half:,}), extrapolated "
                     f"to a full day ({full_window:,} probes) as fixed cost per route + {per_probe_s * 1e6:.2f} us/probe")
    return [
        line("store_insert_rate", round(rate), "probes/s",
             note=scale_note + f"{hops / written:.1f} hops each, 1,000 routes, Store.write_result + flush"
             + (f"; {wanted:,} would take ~{wanted / rate / 60:.0f} min" if extrapolated else "")),
        at_most("store_bytes_per_probe", round(per_probe), "bytes", 400,
                note=f"file size after WAL checkpoint / probes ({size / 1e6:.0f} MB for {written:,}), hops included"),
        at_most("store_last60_ms", round(last60_ms, 3), "ms", 5,
                note=f"Store.last_probes(route, 60), median of 50 routes (max {last60_max:.2f} ms), {written:,} probes stored"),
        at_most("store_24h_percentiles_all_routes_s", round(win_val, 3), "s", 1, note=win_note),
    ]
