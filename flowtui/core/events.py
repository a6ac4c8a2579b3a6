"""The engine's events and the bus that fans them out to subscribers.

Events are frozen dataclasses named in the past tense; they carry immutable
snapshots (a ``ProbeResult`` is frozen), never live objects shared with the
engine. The UI, the headless printer and the alert engine each subscribe.

``EventBus`` never lets a slow subscriber hold up the publisher: each
subscriber has its own bounded queue, and when it is full the *oldest* event
in it is dropped (and counted in ``Subscription.dropped``) to make room for
the newest. A subscriber that falls behind sees the latest state, not a
growing backlog; the store, not the bus, is the complete record.

Threading: ``publish`` must be called on the event loop's thread (the one
the bus is bound to; asyncio queues are not thread-safe). From any other
thread call ``publish_threadsafe``, which hands the event to the loop with
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from flowtui.core.model import ProbeResult
from flowtui.core.storage import AlertRecord

DEFAULT_MAXSIZE = 1000


# --------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event on the bus."""


@dataclass(frozen=True, slots=True)
class ProbeSent(Event):
    """A probe was accepted by the submission server (or handed to it).

    Its first ``ProbeCompleted`` (state ``pending`` or ``send_failed``)
    follows with the full result.
    """

    route: str
    probe_id: str
    seq: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class ProbeCompleted(Event):
    """A probe reached a new state: pending, delivered, lost, late, bounced, ...

    Published on *every* state change, so a probe can be "completed" more
    than once (lost, then late). ``result`` is the probe at its new state.
    """

    result: ProbeResult

    @property
    def route(self) -> str:
        return self.result.route


class MailboxState(StrEnum):
    CONNECTED = "connected"  # logged in, folders selected
    IDLE = "idle"  # waiting in IMAP IDLE
    POLLING = "polling"  # the server has no IDLE: polling on an interval
    RECONNECTING = "reconnecting"  # lost the connection, retrying with backoff
    DOWN = "down"  # gave up for now (auth failure, repeated errors)


@dataclass(frozen=True, slots=True)
class MailboxStateChanged(Event):
    """A watched mailbox's connection changed state.

    ``mailbox`` names the shared connection (e.g. ``user@host:993``);
    ``state`` is a ``MailboxState`` value; ``detail`` is one line for the
    log (an error text, the folder list), never a password.
    """

    mailbox: str
    state: str
    detail: str = ""


class RouteState(StrEnum):
    OK = "ok"
    WARN = "warn"  # latency over warn_s, or some failures
    CRIT = "crit"  # latency over crit_s, or failing
    UNKNOWN = "unknown"  # no decided probe yet
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class RouteStateChanged(Event):
    """A route's overall health changed (``state`` is a ``RouteState`` value)."""

    route: str
    state: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AlertRaised(Event):
    """An alert fired (once per firing; ``escalated`` when a firing one got worse)."""

    alert: AlertRecord
    escalated: bool = False


@dataclass(frozen=True, slots=True)
class AlertResolved(Event):
    """A firing alert's condition cleared; ``alert`` has state "resolved"."""

    alert: AlertRecord


@dataclass(frozen=True, slots=True)
class NotifierFailed(Event):
    """A notifier (command, webhook) failed or timed out; ``detail`` is one line."""

    notifier: str
    alert_id: str
    detail: str


@dataclass(frozen=True, slots=True)
class DmarcReportsImported(Event):
    """The DMARC collector looked at its folder: reports imported, duplicates, errors (one line each)."""

    imported: int
    duplicates: int = 0
    errors: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# The bus
# --------------------------------------------------------------------------

_CLOSED = object()  # sentinel that ends a subscription's iteration


class Subscription:
    """One subscriber's bounded queue; iterate it with ``async for``.

    Iteration ends after ``close()`` (once the events queued before it have
    been read). ``dropped`` counts events discarded because this subscriber
    fell behind.
    """

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("a subscription needs room for at least one event")
        self._bus = bus
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0
        self.closed = False

    # called by the bus, on the loop's thread
    def _offer(self, item: object) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # drop the oldest
            if item is not _CLOSED:
                self.dropped += 1
        self._queue.put_nowait(item)

    def qsize(self) -> int:
        return self._queue.qsize()

    async def get(self) -> Event:
        """The next event; raises ``StopAsyncIteration`` once closed and drained."""
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # keep later get() calls ending too
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    def drain(self) -> list[Event]:
        """Every event waiting now, oldest first, without waiting (for a UI tick)."""
        out: list[Event] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _CLOSED:
                self._queue.put_nowait(_CLOSED)
                break
            out.append(item)  # type: ignore[arg-type]
        return out

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def close(self) -> None:
        """Stop receiving events; an ``async for`` over this ends. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._bus._unsubscribe(self)
        self._offer(_CLOSED)


class EventBus:
    """Async fan-out of events to subscribers with bounded, drop-oldest queues."""

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        self.maxsize = maxsize
        self._subs: list[Subscription] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None or self._loop.is_closed():
            self._loop = loop
            self._loop_thread = threading.get_ident()
        elif loop is not self._loop:
            raise RuntimeError("this EventBus is bound to another event loop")

    def subscribe(self, maxsize: int | None = None) -> Subscription:
        """A new subscription; call on the event loop (binds the bus to it)."""
        self._bind()
        sub = Subscription(self, self.maxsize if maxsize is None else maxsize)
        self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber; never blocks, never awaits.

        Must be called on the bus's event-loop thread; from another thread
        use ``publish_threadsafe``.
        """
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            raise RuntimeError("EventBus.publish called off the event loop's thread; use publish_threadsafe")
        for sub in tuple(self._subs):
            sub._offer(event)

    def publish_threadsafe(self, event: Event) -> None:
        """``publish`` from any thread. Dropped if no loop is bound or it has closed."""
        loop = self._loop
        if loop is None:
            return  # nobody has subscribed yet: nobody to tell
        try:
            loop.call_soon_threadsafe(self.publish, event)
        except RuntimeError:
            pass  # the loop has closed (shutdown): there is nobody left to tell

    def close(self) -> None:
        """Close every subscription (on shutdown); call on the loop's thread."""
        for sub in tuple(self._subs):
            sub.close()
