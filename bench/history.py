"""history: roll-ups, retention and reports at size (issue 7).

Routes x a year of probes (one every 10 minutes, three hops each), written
through ``Store.write_result``. Then: the first roll-up run over all of it
(throughput, and the longest single step: how long the writer is held), an
incremental round after one more hour of probes, and ``build_report`` over
7 days (raw rows) and over the year (roll-ups) for every route.
"""

from __future__ import annotations

import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import at_most, line, log, peak_rss_mb

from flowtui.core.model import Hop, ProbeResult, ProbeState
from flowtui.core.rollup import DAY, HOUR, Maintainer, rollup_step
from flowtui.core.storage import Store
from flowtui.report import build_report

STEP = 600


def probes(routes: int, days: int, now: float):
    rnd = random.Random(1)
    for i in range(int(days * DAY // STEP)):
        for r in range(routes):
            sent = now - days * DAY + i * STEP + rnd.uniform(0, 30)
            ok = rnd.random() < 0.97
            tra = rnd.lognormvariate(1, 0.5) if ok else None
            ts = datetime.fromtimestamp(int(sent), timezone.utc)
            hops = () if not ok else tuple(
                Hop(index=k, by_host=f"h{k}.bench.test", tls=True, timestamp=ts + timedelta(seconds=k),
                    delay_s=None if k == 0 else 1.0) for k in range(3))
            yield ProbeResult(route=f"route-{r:03d}", probe_id=f"{r}-{i}", seq=i + 1,
                              state=ProbeState.DELIVERED if ok else ProbeState.LOST, sent_at=sent, submit_s=0.2,
                              transit_s=tra, total_s=None if tra is None else tra + 0.2, hops=hops)


def run(quick: bool):
    routes, days = (10, 90) if quick else (50, 365)
    now = time.time()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "history.db"
        store = Store(db, batch_size=5000)
        t = time.monotonic()
        n = 0
        for r in probes(routes, days, now - HOUR):
            store.write_result(r)
            n += 1
        store.flush_sync()
        log(f"history: wrote {n} probes in {time.monotonic() - t:.0f}s")
        yield line("history_probes", n, "probes", note=f"{routes} routes x {days} days, one per 10 min")

        longest = 0.0
        t = time.monotonic()
        while True:
            s = time.monotonic()
            more = store.call(lambda db: rollup_step(db, now, 660)).result()
            longest = max(longest, time.monotonic() - s)
            if not more:
                break
        first = time.monotonic() - t
        yield line("rollup_first_run_rate", round(n / first), "probes/s", note=f"{first:.1f} s for all of it")
        yield at_most("rollup_longest_step_s", round(longest, 3), "s (writer held)", 2.0)

        m = Maintainer(store, 30 * DAY, 730 * DAY, grace_s=660)
        t = time.monotonic()
        m.run_once(now=now)
        yield line("retention_prune_s", round(time.monotonic() - t, 2), "s",
                   note=f"first prune to 30 days: {m.last.get('pruned_probes')} probes")
        for r in probes(routes, 1 / 24, now + 2 * HOUR):
            store.write_result(r)
        store.flush_sync()
        t = time.monotonic()
        m.run_once(now=now + 3 * HOUR)
        yield at_most("rollup_incremental_round_s", round(time.monotonic() - t, 3), "s", 1.0,
                      note="one more hour of probes for every route")

        names = [f"route-{r:03d}" for r in range(routes)]
        for label, span in (("7d", 7 * DAY), ("all", days * DAY)):
            t = time.monotonic()
            store.read(lambda conn: build_report(conn, names, now - span, now, now, 30 * DAY))
            yield at_most(f"report_{label}_s", round(time.monotonic() - t, 2), "s", 10.0,
                          note=f"{routes} routes, {span / DAY:.0f} days")
        store.close()
        yield line("history_peak_rss", peak_rss_mb(), "MB")
