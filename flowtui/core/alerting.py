"""The alert engine: the rule state machine (alerts.py) wired to the bus, the store,
the DNS checker and the notifiers.

It subscribes to the engine's ``ProbeCompleted`` events, ticks on a timer so
waiting probes age into latency alerts, writes every fired / escalated /
resolved alert to the store, publishes ``AlertRaised`` / ``AlertResolved``
and hands them to the notifiers (each in its own task: a slow webhook holds
up nothing). Firing alerts are loaded from the store at start, so a
restarted monitor does not fire them again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from flowtui.core.alerts import AlertBook, DnsObservation, Transition, alert_key
from flowtui.core.events import (
    AlertRaised,
    AlertResolved,
    DmarcReportsImported,
    EventBus,
    MailboxStateChanged,
    NotifierFailed,
    ProbeCompleted,
)
from flowtui.core.model import DMARC_ALERT_KINDS, Config
from flowtui.core.notify import Notifier
from flowtui.core.storage import Store

log = logging.getLogger("flowtui.alerts")

TICK_S = 0.5
ACK_SYNC_S = 5.0  # how often acknowledgements made outside this process are read back
DMARC_CHECK_S = 600.0  # DMARC rules are also re-checked on every import


class AlertEngine:
    def __init__(
        self, config: Config, store: Store, bus: EventBus, notifiers: list[Notifier] | None = None,
        *, tick_s: float = TICK_S, clock: Callable[[], float] = time.time, dns: bool = True,
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.notifiers = list(notifiers or [])
        self.tick_s = tick_s
        self.clock = clock
        self.book = AlertBook(config.alerts, {r.name: r for r in config.routes})
        self.silenced: dict[str, float] = {}  # alert key or rule name -> until (epoch)
        self.mailboxes: dict[str, tuple[str, str, float]] = {}  # name -> (state, detail, since)
        self._dns_enabled = dns and bool(config.dns.domains) and any(r.kind == "dns" for r in config.alerts)
        self._dmarc_rules = [r for r in config.alerts if r.kind in DMARC_ALERT_KINDS]
        self._dmarc_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._sends: set[asyncio.Task] = set()
        self._sub = None

    async def start(self) -> None:
        """Restore firing alerts and recent probes, subscribe, start ticking (and DNS checks)."""
        firing = await asyncio.to_thread(self.store.alerts, state="fired", limit=100_000)
        probes = []
        for route in self.config.routes:
            probes += await asyncio.to_thread(self.store.last_probes, route.name, 50, with_hops=True)
        self.book.restore(firing, probes)
        if self._dns_enabled:  # record values from before this start: changes meanwhile are changes
            self.book.restore_dns(await asyncio.to_thread(self.store.last_dns_values))
        self._sub = self.bus.subscribe()
        self._tasks.append(asyncio.create_task(self._consume(), name="alerts"))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="alerts tick"))
        if self._dns_enabled:
            from flowtui.core.dnscheck import DnsChecker

            self.dns_checker = DnsChecker(self.config.dns, self.store)
            self._tasks.append(asyncio.create_task(self._dns_loop(), name="dns checks"))
        if self._dmarc_rules:
            self._tasks.append(asyncio.create_task(self._dmarc_loop(), name="dmarc rules"))

    async def stop(self, grace_s: float = 5.0) -> None:
        """Handle what is already queued, stop, and give notifications a moment to finish."""
        if self._sub is not None:
            self._sub.close()
        consume = self._tasks[:1]
        if consume:
            try:
                async with asyncio.timeout(grace_s):
                    await asyncio.gather(*consume, return_exceptions=True)
            except TimeoutError:
                pass
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._sends:
            done, pending = await asyncio.wait(self._sends, timeout=grace_s)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.store.flush()

    # ------------------------------------------------------------ loops
    async def _consume(self) -> None:
        assert self._sub is not None
        async for event in self._sub:
            if isinstance(event, ProbeCompleted):
                self.apply(self.book.observe(event.result, self.clock()))
            elif isinstance(event, MailboxStateChanged):
                self.observe_mailbox(event.mailbox, event.state, event.detail)
            elif isinstance(event, DmarcReportsImported) and self._dmarc_rules and event.imported:
                task = asyncio.create_task(self.check_dmarc(), name="dmarc rules after import")
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

    async def _tick_loop(self) -> None:
        last_sync = self.clock()
        while True:
            await asyncio.sleep(self.tick_s)
            self.apply(self.book.tick(self.clock()))
            for name, (state, detail, since) in list(self.mailboxes.items()):  # a connection still not up
                self.apply(self.book.observe_mailbox(name, state, detail, since, self.clock()))
            if self.clock() - last_sync >= ACK_SYNC_S:
                last_sync = self.clock()
                await self.sync_acks()

    def observe_mailbox(self, mailbox: str, state: str, detail: str = "") -> list[Transition]:
        """A mailbox connection changed state (from the engine's watchers)."""
        old = self.mailboxes.get(mailbox)
        up = state in ("idle", "polling")
        # since when it has been up, or not up (connecting, reconnecting and down are one spell)
        since = old[2] if old is not None and (old[0] in ("idle", "polling")) == up else self.clock()
        self.mailboxes[mailbox] = (state, detail, since)
        transitions = self.book.observe_mailbox(mailbox, state, detail, since, self.clock())
        self.apply(transitions)
        return transitions

    async def sync_acks(self) -> int:
        """Take acknowledgements made elsewhere (``flowtui alerts --ack`` on the same
        database, another monitor's UI) into the firing alerts, so their
        notifications stop. Returns how many were taken."""
        try:
            stored = await asyncio.to_thread(self.store.alerts, state="fired", limit=100_000)
        except Exception as exc:  # a busy or closed store: try again next time
            log.debug("alerts: cannot read acknowledgements: %s", exc)
            return 0
        taken = 0
        for rec in stored:
            if rec.acked_at is not None and self.book.ack_if_new(rec.id, rec.acked_at):
                taken += 1
        return taken

    async def _dns_loop(self) -> None:
        while True:
            for obs in await self.dns_checker.check_all():
                self.observe_dns(obs)
            await asyncio.sleep(self.config.dns.interval_s)

    async def _dmarc_loop(self) -> None:
        while True:
            try:
                await self.check_dmarc()
            except Exception as exc:  # a locked or broken database: say so, try again later
                log.warning("dmarc rules: %s", exc)
            await asyncio.sleep(DMARC_CHECK_S)

    async def check_dmarc(self) -> list[Transition]:
        """Evaluate the DMARC rules over the stored reports (in a thread) and apply them."""
        from flowtui.core.dmarc.rules import conditions

        out: list[Transition] = []
        async with self._dmarc_lock:
            now = self.clock()
            for rule in self._dmarc_rules:
                conds = await asyncio.to_thread(self.store.read, lambda conn, r=rule: conditions(r, conn, now))
                transitions = self.book.observe_dmarc(rule, conds, now)
                self.apply(transitions)
                out += transitions
        return out

    def observe_dns(self, obs: DnsObservation) -> list[Transition]:
        transitions = self.book.observe_dns(obs, self.clock())
        self.apply(transitions)
        return transitions

    # ------------------------------------------------------------ actions
    def apply(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self.store.write_alert(t.alert)
            if t.kind == "resolved":
                self.bus.publish(AlertResolved(t.alert))
            else:
                self.bus.publish(AlertRaised(t.alert, escalated=t.kind == "escalated"))
            if t.alert.acked_at is not None and t.kind != "resolved":
                continue  # acknowledged: the people who need to know, know
            if self.is_silenced(t.alert.id):
                continue
            for n in self.notifiers:
                if n.wants(t.kind, t.alert):
                    task = asyncio.create_task(self._notify(n, t), name=f"notify {n.name}")
                    self._sends.add(task)
                    task.add_done_callback(self._sends.discard)

    async def _notify(self, notifier: Notifier, t: Transition) -> None:
        try:
            problem = await notifier.send(t.kind, t.alert)
        except Exception as exc:  # a notifier bug must not take the monitor down
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            log.warning("notifier %s for %s: %s", notifier.name, t.alert.id, problem)
            self.bus.publish(NotifierFailed(notifier.name, t.alert.id, problem))

    def ack(self, alert_id: str) -> bool:
        """Acknowledge a firing alert: stored, and no more notifications until it resolves."""
        rec = self.book.ack(alert_id, self.clock())
        self.store.ack_alert(alert_id, self.clock())
        return rec is not None

    def silence(self, what: str, for_s: float) -> None:
        """No notifications for an alert (by id or key) or a whole rule (by name) for ``for_s``."""
        self.silenced[alert_key(what) if "|" in what else what] = self.clock() + for_s

    def is_silenced(self, alert_id: str) -> bool:
        now = self.clock()
        key = alert_key(alert_id)
        rule = key.split("|", 1)[0]
        return any(self.silenced.get(k, 0) > now for k in (key, rule))

