"""The engine against the embedded lab: junk, corrupted, lost/late, one watcher per mailbox."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from flowtui.core.config import load_config
from flowtui.core.events import ProbeCompleted
from flowtui.core.model import ProbeState
from flowtui.core.storage import Store
from flowtui.lab.embedded import EmbeddedLab
from mail import running_engine


async def with_engine(lab_dir, routes_from, body):
    config = load_config(lab_dir / "lab.toml")
    config = replace(config, routes=tuple(routes_from(config.routes[0])),
                     monitor=replace(config.monitor, database=str(lab_dir / "e.db")))
    async with running_engine(config, 10) as (engine, events):
        return await body(engine, config, events)


async def test_probe_in_junk_folder_is_junk_and_shared_mailbox_has_one_watcher(lab_dir):
    async with await EmbeddedLab.start(lab_dir):
        def routes(r):
            return [r, replace(r, name="to-junk", rcpt_to="probe+Junk@example.test")]

        async def body(engine, config, events):
            assert len(engine.watchers) == 1  # same mailbox: one connection
            inbox, junk = config.routes
            return await asyncio.gather(engine.probe_once(inbox, 10), engine.probe_once(junk, 10))

        ok, junk = await with_engine(lab_dir, routes, body)
    assert ok.state is ProbeState.DELIVERED and ok.folder == "INBOX"
    assert junk.state is ProbeState.JUNK and junk.folder == "Junk" and junk.total_s > 0


async def test_content_changed_in_transit_is_corrupted(lab_dir):
    async with await EmbeddedLab.start(lab_dir) as lab:
        lab.hop(2).rewrite = lambda data: data.replace(b"automated", b"AUTOMATED")

        async def body(engine, config, events):
            return await engine.probe_once(config.routes[0], 10)

        r = await with_engine(lab_dir, lambda r: [r], body)
    assert r.state is ProbeState.CORRUPTED and r.content_ok is False


async def test_lost_then_late_and_sequence_numbers(lab_dir):
    async with await EmbeddedLab.start(lab_dir) as lab:
        async def body(engine, config, events):
            route = replace(config.routes[0], timeout_s=1.0)
            first = await engine.probe_once(route, 5)
            lab.hop(1).hold()
            lost = await engine.probe_once(route)
            assert lost.state is ProbeState.LOST
            lab.hop(1).release()
            async with asyncio.timeout(10):
                async for ev in events:
                    if isinstance(ev, ProbeCompleted) and ev.result.probe_id == lost.probe_id \
                            and ev.result.state is ProbeState.LATE:
                        return first, lost, ev.result

        first, lost, late = await with_engine(lab_dir, lambda r: [r], body)
    assert (first.seq, lost.seq) == (1, 2) and late.seq == 2
    assert first.state is ProbeState.DELIVERED
    assert late.total_s > 1.0 and len(late.hops) == 3
    with Store(lab_dir / "e.db") as store:
        assert store.probe(late.probe_id).state is ProbeState.LATE
        assert store.next_seq(first.route) == 3
