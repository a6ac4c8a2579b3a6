"""scale: many routes over many mailboxes, on local servers in another process.

1,000 routes over 100 mailboxes (quick: 100 over 10), one probe per route per
interval. The lab (pure-Python SMTP hop + pymap IMAP with IDLE) runs in its
own process, so the CPU seconds and peak RSS are flowtui's alone; the two
share the machine's cores. Quick mode compresses time (a 6 s interval for 100
routes: the same probe rate, 16.7/s, and the same work per probe).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import at_most, cpu_s, line, log, peak_rss_mb

from flowtui.core.config import load_config
from flowtui.core.engine import Engine
from flowtui.core.events import EventBus, ProbeCompleted
from flowtui.core.model import ProbeState
from flowtui.core.storage import Store

HERE = Path(__file__).resolve().parent


async def _run(d: Path, ports: list[int], routes_n: int, interval: float, run_s: float) -> dict:
    config = load_config(d / "lab.toml")
    tpl = config.routes[0]
    n_mb = len(ports)
    routes = []
    for i in range(routes_n):
        mb = i % n_mb
        routes.append(replace(
            tpl, name=f"r{i:04d}", rcpt_to=f"probe+F{mb}@example.test", interval_s=interval,
            jitter_s=min(2.0, interval / 10), timeout_s=max(60.0, interval * 2),
            imap=replace(tpl.imap, port=ports[mb], folders=(f"F{mb}",), junk_folders=()),
        ))
    config = replace(config, routes=tuple(routes), monitor=replace(config.monitor, database=str(d / "scale.db")))
    store = Store(config.monitor.database)
    bus = EventBus()
    events = bus.subscribe(maxsize=100_000)
    engine = Engine(config, store, bus)
    out: dict = {}
    try:
        t = time.monotonic()
        await engine.start(schedule=False)
        await engine.wait_ready(60)
        ready = sum(1 for w in engine.watchers.values() if w.state in ("idle", "polling"))
        out["connect_s"] = time.monotonic() - t
        out["ready"] = f"{ready}/{len(engine.watchers)}"
        c0, m0 = cpu_s(), time.monotonic()
        for route in engine.routes.values():
            engine._tasks.append(asyncio.create_task(engine._schedule(route), name=f"schedule {route.name}"))
        await asyncio.sleep(run_s)
        out["cpu"] = cpu_s() - c0
        out["wall"] = time.monotonic() - m0
        out["sent"] = sum(engine._seq.values()) - len(engine._seq)
        out["missed"] = engine.missed_schedules
    finally:
        await engine.stop()
        store.close()
    states: dict[str, int] = {}
    totals = []
    for ev in events.drain():
        if isinstance(ev, ProbeCompleted) and ev.result.state is not ProbeState.PENDING:
            states[ev.result.state.value] = states.get(ev.result.state.value, 0) + 1
            if ev.result.total_s is not None:
                totals.append(ev.result.total_s)
    out["states"] = states
    totals.sort()
    out["total_p50"] = totals[len(totals) // 2] if totals else None
    return out


def run(quick: bool) -> list[dict]:
    routes_n, mailboxes = (100, 5) if quick else (1000, 100)
    interval = 6.0 if quick else 60.0
    run_s = 6.0 if quick else 150.0
    with tempfile.TemporaryDirectory(prefix="flowtui-bench-scale-") as d:
        d = Path(d)
        lab = subprocess.Popen(
            [sys.executable, str(HERE / "scale_lab.py"), str(d), "--mailboxes", str(mailboxes),
             "--max-s", str(run_s + 300)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            first = lab.stdout.readline()
            ports = json.loads(first)["imaps_ports"]
            out = asyncio.run(_run(d, ports, routes_n, interval, run_s))
        finally:
            lab.stdin.close()
            try:
                lab.wait(30)
            except subprocess.TimeoutExpired:
                lab.kill()
                lab.wait()
    log(f"scale: {out}")
    per = out["cpu"] / out["sent"] if out["sent"] else None
    shape = (f"{routes_n} routes over {mailboxes} mailboxes (one pymap user: {mailboxes} folders, each on its own "
             f"IMAPS port), every {interval:g} s, 2-hop SMTP lab with STARTTLS+AUTH in another process; "
             f"{out['sent']} probes sent in {out['wall']:.0f} s; outcomes {out['states']}; "
             f"watchers ready {out['ready']} after {out['connect_s']:.1f} s (connects + push calibration, not counted)")
    return [
        at_most("scale_cpu_per_probe_ms", None if per is None else round(per * 1000, 3), "ms CPU", 2,
                note="flowtui process (loop + store writer), after start-up; " + shape),
        at_most("scale_peak_rss_mb", peak_rss_mb(), "MB", 250, note="peak RSS of the flowtui process"),
        line("scale_missed_schedules", out["missed"], "count", "== 0", out["missed"] == 0,
             note="engine.missed_schedules"),
        line("scale_total_p50_s", None if out["total_p50"] is None else round(out["total_p50"], 3), "s",
             note="median probe total (send -> detected) under this load, for context"),
    ]
