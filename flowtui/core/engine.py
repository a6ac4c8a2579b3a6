"""The probe engine: schedules probes, sends them, matches arrivals, decides results.

A failed probe is data (a ProbeResult), never an exception. Every state change
is written to the store and published on the bus. No UI imports here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from flowtui.core.events import EventBus, MailboxStateChanged, ProbeCompleted, ProbeSent
from flowtui.core.headers import parse_authentication_results, parse_received_chain
from flowtui.core.model import Bounce, Config, ProbeResult, ProbeState, Route
from flowtui.core.probes.bounces import BounceWatcher
from flowtui.core.probes.imap import FoundProbe, MailboxWatcher
from flowtui.core.probes.smtp import send_probe
from flowtui.core.storage import Store
from flowtui.core.token import build_message, load_secret

log = logging.getLogger("flowtui.engine")

LATE_WINDOW_S = 7 * 24 * 3600  # a lost probe that turns up within this is recorded as late


@dataclass
class _Pending:
    route: Route
    result: ProbeResult
    t0_mono: float | None = None  # None: restored from the store after a restart
    accepted_mono: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # a copy that arrived changed (or a look-alike with its token): CORRUPTED if no true copy comes
    corrupt_copy: ProbeResult | None = None


class Engine:
    def __init__(self, config: Config, store: Store, bus: EventBus, key: bytes | None = None) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        secret = config.monitor.secret_file or str(Path(config.monitor.database).with_suffix(".secret"))
        self.key = key if key is not None else load_secret(secret)
        self.routes = {r.name: r for r in config.routes}
        self.pending: dict[str, _Pending] = {}
        self.watchers: dict[tuple, MailboxWatcher] = {}
        self.route_watcher: dict[str, MailboxWatcher] = {}
        self.bounce_watchers: dict[tuple, BounceWatcher] = {}
        self.missed_schedules = 0
        self.duplicates = 0
        self._seq: dict[str, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._sends: set[asyncio.Task] = set()
        self._arrived: dict[str, _Pending] = {}  # decided by an arrival, waiting for its removal
        self.paused: set[str] = set()  # routes whose schedule skips its slots (probe_now still sends)

    # -------------------------------------------------------------- set-up
    async def start(self, schedule: bool = True) -> None:
        """Start the mailbox watchers (and, with ``schedule``, the probe schedulers)."""
        for route in self.routes.values():
            self.store.write_route(route)
            self._seq[route.name] = await asyncio.to_thread(self.store.next_seq, route.name)
        await self._restore_pending()
        groups: dict[tuple, list[Route]] = {}
        for route in self.routes.values():
            groups.setdefault(route.imap.mailbox_key(), []).append(route)
        for key, routes in groups.items():
            folders = tuple(dict.fromkeys(f for r in routes for f in r.imap.folders))
            junk_sets = [r.imap.junk_folders for r in routes]
            junk = None if any(j is None for j in junk_sets) else tuple(dict.fromkeys(f for j in junk_sets for f in j))
            watcher = MailboxWatcher(
                routes[0].imap, self.key, self._on_found,
                folders=folders, junk_folders=junk,
                busy=lambda names=tuple(r.name for r in routes): self._busy(names),
                on_removed=self._on_removed,
            )
            watcher.on_state = lambda state, detail, w=watcher: self.bus.publish(
                MailboxStateChanged(w.name, state, detail)
            )
            self.watchers[key] = watcher
            for r in routes:
                self.route_watcher[r.name] = watcher
            self._tasks.append(asyncio.create_task(watcher.run(), name=f"watch {watcher.name}"))
        bounce_groups: dict[tuple, list[Route]] = {}
        for route in self.routes.values():
            if route.bounces is not None:
                bounce_groups.setdefault(route.bounces.mailbox_key(), []).append(route)
        for key, routes in bounce_groups.items():
            names = tuple(r.name for r in routes)
            folders = tuple(dict.fromkeys(f for r in routes for f in r.bounces.folders))
            bw = BounceWatcher(replace(routes[0].bounces, folders=folders),
                               lambda names=names: self._bounce_wanted(names), self._on_bounce)
            self.bounce_watchers[key] = bw
            self._tasks.append(asyncio.create_task(bw.run(), name=f"bounces {bw.name}"))
        self._tasks.append(asyncio.create_task(self._expire_loop(), name="expire"))
        if schedule:
            n = len(self.routes)
            for i, route in enumerate(self.routes.values()):
                # route i starts i/n of its interval in: many routes never send in one burst
                phase = route.interval_s * i / n
                self._tasks.append(asyncio.create_task(self._schedule(route, phase), name=f"schedule {route.name}"))

    async def stop(self) -> None:
        """Cancel every task and wait for them; in-flight probes stay pending in the store."""
        tasks = self._tasks + list(self._sends)
        # cancel until done: Python 3.11's asyncio.wait_for (used inside aioimaplib) can
        # swallow a cancellation that lands as its inner call completes
        for _ in range(100):
            left = [t for t in tasks if not t.done()]
            if not left:
                break
            for t in left:
                t.cancel()
            await asyncio.wait(left, timeout=0.2)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self.store.flush()

    async def _restore_pending(self) -> None:
        since = time.time() - LATE_WINDOW_S
        for result in await asyncio.to_thread(self.store.pending_probes, since):
            route = self.routes.get(result.route)
            if route is not None:
                self.pending[result.probe_id] = _Pending(route, result)

    def _busy(self, route_names: tuple[str, ...]) -> bool:
        return any(p.route.name in route_names and p.result.state is ProbeState.PENDING for p in self.pending.values())

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every mailbox watcher has connected once (or the timeout passes)."""
        waits = [w.connected_once.wait() for w in self.watchers.values()]
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            pass

    # ------------------------------------------------------------ sending
    async def _schedule(self, route: Route, phase: float = 0.0) -> None:
        watcher = self.route_watcher[route.name]
        try:
            async with asyncio.timeout(route.imap.timeout_s):
                await watcher.connected_once.wait()
        except TimeoutError:
            pass  # send anyway: a mailbox that is down is a result too
        start = time.monotonic() + phase
        k = 0
        while True:
            slot = start + k * route.interval_s + random.uniform(0, min(route.jitter_s, route.interval_s / 2))
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1.0:
                self.missed_schedules += 1
            if route.name not in self.paused:
                self._spawn_send(route)
            k += 1
            # skip slots that have already passed (a stalled loop) instead of bursting
            while start + k * route.interval_s < time.monotonic() - route.interval_s:
                k += 1
                self.missed_schedules += 1

    def _spawn_send(self, route: Route) -> asyncio.Task:
        task = asyncio.create_task(self.send(route), name=f"probe {route.name}")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        return task

    def probe_now(self, route_name: str) -> asyncio.Task:
        """Send one probe along the named route now, as a task ``stop()`` cancels."""
        return self._spawn_send(self.routes[route_name])

    def pause(self, route_name: str) -> None:
        """Skip the route's scheduled probes until ``resume``; probes in flight carry on."""
        if route_name not in self.routes:
            raise KeyError(route_name)
        self.paused.add(route_name)

    def resume(self, route_name: str) -> None:
        self.paused.discard(route_name)

    @property
    def tasks(self) -> list[asyncio.Task]:
        """The engine's long-running tasks and probes in flight (for shutdown checks)."""
        return self._tasks + list(self._sends)

    async def send(self, route: Route) -> _Pending:
        """Send one probe along ``route``; returns its pending record (its result may be send_failed)."""
        seq = self._seq[route.name]
        self._seq[route.name] = seq + 1
        probe = build_message(
            self.key, route.name, seq, route.mail_from, route.rcpt_to, route.subject, route.body, route.attachment_bytes
        )
        sent_at = time.time()
        result = ProbeResult(
            route=route.name, probe_id=probe.probe_id, seq=seq, state=ProbeState.PENDING,
            sent_at=sent_at, message_id=probe.message_id,
        )
        pending = _Pending(route, result)
        self.pending[probe.probe_id] = pending
        # on disk before it can arrive: a monitor killed now still matches it after a restart
        self.store.write_result(result)
        await self.store.flush()
        pending.t0_mono = time.monotonic()
        sent_at = time.time()
        self.bus.publish(ProbeSent(route.name, probe.probe_id, seq, sent_at))
        watcher = self.route_watcher.get(route.name)
        if watcher is not None:
            watcher.wake.set()  # look soon, so junk folders are covered while pending
        out = await send_probe(route.smtp, route.mail_from, route.rcpt_to, probe.data, start_mono=pending.t0_mono)
        if pending.result.state is not ProbeState.PENDING:
            # it arrived before the 250 came back (fast loopback): keep its submit figures too
            if out.ok:
                r = pending.result
                detected = tuple(p for p in r.phases if p[0] == "detected")
                pending.result = replace(  # transit: 0, not below (it was there before the 250)
                    r, submit_s=out.submit_s, queue_id=out.queue_id, phases=tuple(out.phases) + detected,
                    transit_s=None if r.total_s is None else max(0.0, r.total_s - out.submit_s),
                )
                self.store.write_result(pending.result)
                self.bus.publish(ProbeCompleted(pending.result))
            return pending
        if out.ok:
            pending.accepted_mono = out.accepted_mono
            self._update(pending, replace(
                pending.result, sent_at=sent_at, submit_s=out.submit_s, queue_id=out.queue_id,
                phases=tuple(out.phases),
            ))
        else:
            self._update(pending, replace(
                pending.result, state=ProbeState.SEND_FAILED, sent_at=sent_at, phases=tuple(out.phases),
                error=out.error, error_phase=out.error_phase,
            ))
        return pending

    def _update(self, pending: _Pending, result: ProbeResult, arrived: bool = False) -> None:
        pending.result = result
        self.store.write_result(result)
        self.bus.publish(ProbeCompleted(result))
        if arrived:  # done once the watcher has removed it from the mailbox
            self.pending.pop(result.probe_id, None)
            self._arrived[result.probe_id] = pending
        elif result.state is not ProbeState.PENDING:
            pending.done.set()
            if result.state is not ProbeState.LOST:  # a lost probe stays: it may turn up late
                self.pending.pop(result.probe_id, None)

    def _on_removed(self, found: FoundProbe, removed: bool) -> None:
        pending = self._arrived.pop(found.token.probe_id, None)
        if pending is not None:
            pending.done.set()

    # ------------------------------------------------------------ bounces
    def _bounce_wanted(self, route_names: tuple[str, ...]) -> list[tuple[str, str, float]]:
        """Probes of these routes a bounce could be about: sent, not arrived (pending or lost)."""
        return [
            (pid, p.result.message_id, p.result.sent_at) for pid, p in self.pending.items()
            if p.route.name in route_names and p.result.message_id
            and p.result.state in (ProbeState.PENDING, ProbeState.LOST) and p.result.submit_s is not None
        ]

    def _on_bounce(self, probe_id: str, bounce: Bounce, at: float) -> None:
        """A failure report for one of our probes: it is bounced, with the reason (final)."""
        pending = self.pending.get(probe_id)
        if pending is None or pending.result.state not in (ProbeState.PENDING, ProbeState.LOST):
            return
        log.info("probe %s of %s bounced: %s", probe_id, pending.route.name, bounce.diagnostic or bounce.status)
        self._update(pending, replace(pending.result, state=ProbeState.BOUNCED, bounce=bounce, detected_at=at))
        self.pending.pop(probe_id, None)  # final, lost or not

    # ------------------------------------------------------------ arrivals
    async def _on_found(self, found: FoundProbe) -> None:
        token = found.token
        pending = self.pending.get(token.probe_id)
        if pending is None:
            if not found.intact:
                return  # a changed copy of a probe that is not outstanding: nothing to record
            known = await asyncio.to_thread(self.store.probe, token.probe_id)
            if known is not None and known.state not in (ProbeState.PENDING, ProbeState.LOST):
                self.duplicates += 1  # a second true copy (e.g. a crash between store and delete)
                return
            route = self.routes.get(token.route)
            if route is None:
                log.info("probe %s of unknown route %r removed", token.probe_id, token.route)
                return
            base = known or ProbeResult(
                route=token.route, probe_id=token.probe_id, seq=token.seq, state=ProbeState.PENDING,
                sent_at=token.sent_at,
            )
            pending = _Pending(route, base)
        result = self._arrival(pending, found)
        if not found.intact:
            # not final: the true copy may still come (a look-alike must not decide the result)
            pending.corrupt_copy = result
            log.warning("probe %s of %s arrived changed in %s", token.probe_id, pending.route.name, found.folder)
            return
        self._update(pending, result, arrived=True)

    def _arrival(self, pending: _Pending, found: FoundProbe) -> ProbeResult:
        """The probe's result as this copy of it says: times, path, authentication, state."""
        r = pending.result
        if pending.t0_mono is not None and found.live:
            total = found.detected_mono - pending.t0_mono
            transit = found.detected_mono - pending.accepted_mono if pending.accepted_mono is not None else None
            if transit is not None and transit < 0:
                # it landed before the 250 reached us (on loopback the mailbox can hold
                # it that soon): transit 0, total as measured
                transit = 0.0
        else:  # restored after a restart, or found by a catch-up scan: wall clocks
            total = found.detected_wall - r.sent_at
            transit = total - r.submit_s if r.submit_s is not None else None
        if not found.intact:
            state = ProbeState.CORRUPTED
        elif found.junk:
            state = ProbeState.JUNK
        elif r.state is ProbeState.LOST:
            state = ProbeState.LATE
        else:
            state = ProbeState.DELIVERED
        unc = found.uncertainty_s
        phases = tuple(p for p in r.phases if p[0] != "detected") + ((("detected", total),) if total is not None else ())
        return replace(
            r, state=state, total_s=total, transit_s=transit, detected_at=found.detected_wall,
            detect_uncertainty_s=None if unc is None or math.isnan(unc) else unc,
            folder=found.folder, hops=parse_received_chain(found.message).hops,
            auth=parse_authentication_results(found.message), content_ok=found.intact, phases=phases,
        )

    def _timed_out(self, pending: _Pending) -> None:
        """No true copy by the timeout: corrupted if a changed one came, else lost."""
        if pending.corrupt_copy is not None:
            self._update(pending, pending.corrupt_copy)
        else:
            self._update(pending, replace(pending.result, state=ProbeState.LOST))

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.time()
            for probe_id, p in list(self.pending.items()):
                r = p.result
                if r.state is ProbeState.PENDING and now - r.sent_at > p.route.timeout_s:
                    self._timed_out(p)
                elif r.state is ProbeState.LOST and now - r.sent_at > LATE_WINDOW_S:
                    self.pending.pop(probe_id, None)

    # ------------------------------------------------------------ one-shot
    async def probe_once(self, route: Route, timeout: float | None = None) -> ProbeResult:
        """Send one probe and wait for its outcome (delivered, junk, send_failed, lost...)."""
        pending = await self.send(route)
        if not pending.done.is_set():
            try:
                async with asyncio.timeout((timeout or route.timeout_s) + 1.0):
                    await pending.done.wait()
            except TimeoutError:
                pass
        if pending.result.state is ProbeState.PENDING:  # the timeout came first
            self._timed_out(pending)
        return pending.result
