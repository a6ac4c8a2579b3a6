"""lag: flowtui's detection instant minus the true landing instant (embedded lab).

The lab and the engine run in one process and one loop, so both instants are
read from the same monotonic clock: the lab's ``Delivery.mono`` (taken when the
mailbox holds the message) and the engine's detection instant
(``t0_mono + total_s``, where ``total_s = detected_mono - t0_mono``).

IDLE: probes one after another (each is detected before the next is sent).
Polling, as a peer tool does it: the same watcher against the same server, with
IDLE struck from the capabilities, looking every ``poll`` seconds on a fixed
clock (not woken by sends and not quickened while probes are pending, which
flowtui's own poll fallback does); probes are sent at random instants over two
poll intervals so their phase against the poll clock is uniform.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import at_most, line, log, pct

import flowtui.core.engine as engine_mod
from flowtui.core.config import load_config
from flowtui.core.engine import Engine
from flowtui.core.events import EventBus
from flowtui.core.model import ProbeState
from flowtui.core.probes.imap import MailboxWatcher
from flowtui.core.storage import Store
from flowtui.lab.embedded import EmbeddedLab


class PeerPollWatcher(MailboxWatcher):
    """The watcher with IDLE hidden, polling on a fixed clock like a peer tool."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.busy = lambda: False  # no quick re-looks while probes are pending

    @property
    def capabilities(self) -> set[str]:
        return self._caps

    @capabilities.setter
    def capabilities(self, caps: set[str]) -> None:
        self._caps = {c for c in caps if c != "IDLE"}

    async def _poll_wait(self) -> None:
        try:  # a fixed clock: sends do not wake it
            async with asyncio.timeout(self.settings.poll_interval_s):
                await self._lost.wait()
        except TimeoutError:
            return None
        raise ConnectionError("the server closed the connection")


async def _measure(n: int, poll_s: float | None) -> tuple[list[float], int, float | None]:
    """Lags in seconds of ``n`` probes; IDLE when ``poll_s`` is None. Also: probes not delivered, push delay."""
    with tempfile.TemporaryDirectory(prefix="flowtui-bench-lag-") as d:
        d = Path(d)
        async with await EmbeddedLab.start(d, hops=2) as lab:
            config = load_config(d / "lab.toml")
            route = config.routes[0]
            route = replace(route, timeout_s=600.0,  # a probe waiting out a 60 s poll is not lost
                            imap=replace(route.imap, junk_folders=(), poll_interval_s=poll_s or 10.0))
            config = replace(config, routes=(route,), monitor=replace(config.monitor, database=str(d / "b.db")))
            store = Store(config.monitor.database)
            saved = engine_mod.MailboxWatcher
            if poll_s is not None:
                engine_mod.MailboxWatcher = PeerPollWatcher
            engine = Engine(config, store, EventBus())
            try:
                await engine.start(schedule=False)
                await engine.wait_ready(15)
                watcher = engine.route_watcher[route.name]

                async def one(delay: float):
                    await asyncio.sleep(delay)
                    p = await engine.send(route)
                    try:
                        async with asyncio.timeout(poll_s * 2 + 15 if poll_s else 15):
                            await p.done.wait()
                    except TimeoutError:
                        pass
                    return p

                if poll_s is None:
                    pendings = [await one(0) for _ in range(n)]
                else:
                    rng = random.Random(8)
                    window = poll_s * (1 if n < 50 else 2)  # at least one whole poll cycle of phases
                    pendings = await asyncio.gather(*(one(rng.uniform(0, window)) for _ in range(n)))
                landed = {dl.message_id: dl for dl in lab.deliveries}
                lags, missing = [], 0
                for p in pendings:
                    r = p.result
                    dl = landed.get(r.message_id)
                    if r.state is not ProbeState.DELIVERED or dl is None or p.t0_mono is None or r.total_s is None:
                        missing += 1
                        continue
                    lags.append(p.t0_mono + r.total_s - dl.mono)
                return lags, missing, watcher.push_delay_s
            finally:
                engine_mod.MailboxWatcher = saved
                await engine.stop()
                store.close()


def run(quick: bool) -> list[dict]:
    n_idle = 30 if quick else 200
    n_poll = 12 if quick else 200
    poll_s = 3.0 if quick else 60.0
    t = time.monotonic()
    idle, miss_i, push = asyncio.run(_measure(n_idle, None))
    log(f"lag: {len(idle)} IDLE probes in {time.monotonic() - t:.1f}s")
    t = time.monotonic()
    poll, miss_p, _ = asyncio.run(_measure(n_poll, poll_s))
    log(f"lag: {len(poll)} polled probes in {time.monotonic() - t:.1f}s")
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    note_i = (f"{len(idle)} probes, embedded lab (2 hops, pymap IDLE), one process"
              + (f"; {miss_i} not delivered" if miss_i else "")
              + (f"; watcher's measured push delay {push * 1000:.1f} ms" if push is not None else ""))
    note_p = (f"{len(poll)} probes, same watcher with IDLE hidden, polling every {poll_s:g} s"
              + (f"; {miss_p} not delivered" if miss_p else ""))
    i50, i99, p50, p99 = pct(idle, 50), pct(idle, 99), pct(poll, 50), pct(poll, 99)
    ratio = round(p50 / i50, 1) if i50 and p50 else None
    return [
        at_most("lag_idle_p50", ms(i50), "ms", 10, note_i),
        at_most("lag_idle_p99", ms(i99), "ms", 50, note_i),
        line(f"lag_poll{poll_s:g}s_p50", ms(p50), "ms", note=note_p),
        line(f"lag_poll{poll_s:g}s_p99", ms(p99), "ms", note=note_p),
        line("lag_poll_over_idle_p50", ratio, "x", note=f"p50 polling every {poll_s:g} s / p50 IDLE"),
    ]
