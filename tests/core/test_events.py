"""EventBus: fan-out, drop-oldest bounded queues, publishing from a thread."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from flowtui.core.events import (
    EventBus,
    MailboxState,
    MailboxStateChanged,
    ProbeCompleted,
    ProbeSent,
    RouteStateChanged,
)
from flowtui.core.model import ProbeResult, ProbeState


def _sent(i: int) -> ProbeSent:
    return ProbeSent(route="r", probe_id=f"p{i}", seq=i, sent_at=1000.0 + i)


async def test_two_subscribers_get_every_event_in_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    events = [_sent(i) for i in range(50)]
    for ev in events:
        bus.publish(ev)
    got_a = [await a.get() for _ in events]
    got_b = [await b.get() for _ in events]
    assert got_a == events and got_b == events
    assert a.dropped == b.dropped == 0


async def test_slow_subscriber_drops_oldest_and_counts_without_blocking_others() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=3)
    fast = bus.subscribe()
    for i in range(10):
        bus.publish(_sent(i))  # returns at once although `slow` never reads
    assert slow.dropped == 7
    assert [ev.seq for ev in slow.drain()] == [7, 8, 9]  # the newest three survive
    assert [ev.seq for ev in fast.drain()] == list(range(10))
    assert fast.dropped == 0


async def test_async_for_ends_after_close_with_queued_events_delivered() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish(_sent(1))
    bus.publish(_sent(2))
    sub.close()
    bus.publish(_sent(3))  # after close: not delivered
    seen = [ev.seq async for ev in sub]
    assert seen == [1, 2]
    assert bus.subscribers == 0
    with pytest.raises(StopAsyncIteration):
        await sub.get()


async def test_close_wakes_a_waiting_reader() -> None:
    bus = EventBus()
    sub = bus.subscribe()

    async def reader() -> list[object]:
        return [ev async for ev in sub]

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    bus.publish(_sent(1))
    await asyncio.sleep(0)
    bus.close()
    assert [ev.seq for ev in await asyncio.wait_for(task, 2)] == [1]


async def test_publish_threadsafe_from_another_thread_arrives_in_order() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    events = [MailboxStateChanged("u@h:993", MailboxState.RECONNECTING, f"try {i}") for i in range(20)]

    def worker() -> None:
        for ev in events:
            bus.publish_threadsafe(ev)

    t = threading.Thread(target=worker)
    t.start()
    got = [await asyncio.wait_for(sub.get(), 2) for _ in events]
    t.join()
    assert got == events


async def test_publish_off_the_loop_thread_is_refused() -> None:
    bus = EventBus()
    bus.subscribe()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            bus.publish(_sent(1))
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert len(errors) == 1 and "publish_threadsafe" in str(errors[0])


def test_publish_threadsafe_without_a_loop_is_a_no_op() -> None:
    EventBus().publish_threadsafe(_sent(1))  # nobody subscribed: nothing to do, no error


async def test_events_are_frozen_snapshots() -> None:
    result = ProbeResult(route="r", probe_id="p", seq=1, state=ProbeState.DELIVERED, sent_at=1.0, total_s=2.0)
    ev = ProbeCompleted(result)
    assert ev.route == "r"
    for event, attr in ((ev, "result"), (_sent(1), "seq"), (RouteStateChanged("r", "ok"), "state")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, attr, None)
