"""The scheduler spreads routes over their interval (no burst of every route at once)."""

from __future__ import annotations

import asyncio

from flowtui.core.engine import Engine
from flowtui.core.events import EventBus
from flowtui.core.model import Config, ImapSettings, MonitorSettings, Route, Security, ServerSettings
from flowtui.core.storage import Store


def route(i: int) -> Route:
    return Route(
        name=f"r{i}", mail_from="a@example.test", rcpt_to="b@example.test",
        smtp=ServerSettings("127.0.0.1", 9, Security.NONE), imap=ImapSettings("127.0.0.1", 9, Security.NONE, timeout_s=0.1),
        interval_s=2.0, jitter_s=0.0,
    )


async def test_first_sends_are_spread_evenly_over_the_interval(tmp_path):
    config = Config(path=str(tmp_path / "c.toml"), monitor=MonitorSettings(database=str(tmp_path / "x.db")),
                    routes=tuple(route(i) for i in range(4)))
    store = Store(config.monitor.database)
    engine = Engine(config, store, EventBus(), key=b"k" * 64)
    sent: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    engine._spawn_send = lambda r: sent.append((r.name, loop.time()))  # record instead of sending
    try:
        await engine.start(schedule=True)
        t0 = loop.time()
        await asyncio.sleep(1.9)
    finally:
        await engine.stop()
        store.close()
    firsts = {}
    for name, at in sent:
        firsts.setdefault(name, at - t0)
    assert sorted(firsts) == ["r0", "r1", "r2", "r3"]
    offsets = [firsts[f"r{i}"] for i in range(4)]
    assert offsets == sorted(offsets)
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    assert all(0.3 < g < 0.7 for g in gaps), offsets  # about interval / 4 apart, not all at once


async def test_stop_ends_a_task_that_swallowed_its_first_cancel(tmp_path):
    """As Python 3.11's asyncio.wait_for can (inside aioimaplib): stop() must still end it."""
    config = Config(path=str(tmp_path / "c.toml"), monitor=MonitorSettings(database=str(tmp_path / "x.db")),
                    routes=(route(0),))
    store = Store(config.monitor.database)
    engine = Engine(config, store, EventBus(), key=b"k" * 64)

    async def stubborn():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # the cancel is lost, as in the wait_for race
        await asyncio.sleep(30)

    task = asyncio.create_task(stubborn())
    engine._tasks.append(task)
    await asyncio.sleep(0)
    try:
        async with asyncio.timeout(10):
            await engine.stop()
    finally:
        store.close()
    assert task.done() and task.cancelled()
