"""The monitor without a UI: one line per probe result on stdout. Core only."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import datetime, timezone
from typing import TextIO

from flowtui.core.alerting import AlertEngine
from flowtui.core.engine import Engine
from flowtui.core.events import (
    AlertRaised,
    AlertResolved,
    DmarcReportsImported,
    EventBus,
    MailboxStateChanged,
    NotifierFailed,
    ProbeCompleted,
)
from flowtui.core.headers import plain_text
from flowtui.core.model import Config, ProbeResult, ProbeState, Route
from flowtui.core.notify import build_notifiers
from flowtui.core.rollup import Maintainer
from flowtui.core.storage import AlertRecord, open_store


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def result_line(r: ProbeResult, route: Route | None = None, now: float | None = None) -> str:
    """One line per result, stamped with the time it is reported (UTC)."""
    head = f"{_stamp(time.time() if now is None else now)} {plain_text(r.route)} #{r.seq} {r.state.value}"
    if r.state is ProbeState.SEND_FAILED:
        return f"{head} at {r.error_phase}: {plain_text(r.error)}"
    if r.state is ProbeState.PENDING:
        return f"{head} submitted in {_s(r.submit_s)} queue id {plain_text(r.queue_id or '-')}"
    if r.state is ProbeState.LOST:
        within = f" within {route.timeout_s:g}s" if route else ""
        return f"{head}: not seen{within} (sent {_stamp(r.sent_at)})"
    flag = ""
    if route is not None and r.total_s is not None:
        flag = " CRIT" if r.total_s >= route.crit_s else " WARN" if r.total_s >= route.warn_s else ""
    unc = f" ±{r.detect_uncertainty_s:.3f}s" if r.detect_uncertainty_s else ""
    where = "" if r.folder in (None, "INBOX") else f" in {plain_text(r.folder)}"
    return (
        f"{head}{flag} total={_s(r.total_s)}{unc} submit={_s(r.submit_s)} "
        f"transit={_s(r.transit_s)} hops={len(r.hops)}{where}"
    )


def result_json(r: ProbeResult) -> str:
    return json.dumps({
        "route": r.route, "seq": r.seq, "probe_id": r.probe_id, "state": r.state.value,
        "sent_at": r.sent_at, "detected_at": r.detected_at, "submit_s": r.submit_s,
        "transit_s": r.transit_s, "total_s": r.total_s, "uncertainty_s": r.detect_uncertainty_s,
        "hops": len(r.hops), "folder": r.folder, "queue_id": r.queue_id,
        "error": r.error, "error_phase": r.error_phase,
    })


def alert_line(alert: AlertRecord, event: str, now: float | None = None) -> str:
    """One line per alert event: ALERT FIRED / ESCALATED / RESOLVED."""
    where = f" {plain_text(alert.route)}" if alert.route else ""
    head = f"{_stamp(time.time() if now is None else now)} ALERT {event.upper()} {alert.severity.upper()}"
    tail = f" (firing {alert.resolved_at - alert.fired_at:.1f}s)" if event == "resolved" and alert.resolved_at else ""
    return f"{head}{where} {plain_text(alert.rule)}: {plain_text(alert.message)}{tail} [{plain_text(alert.id)}]"


def alert_json(alert: AlertRecord, event: str) -> str:
    return json.dumps({
        "alert": event, "id": alert.id, "route": alert.route, "rule": alert.rule, "severity": alert.severity,
        "state": alert.state, "fired_at": alert.fired_at, "resolved_at": alert.resolved_at,
        "message": alert.message, "acked_at": alert.acked_at,
    })


async def run(
    config: Config,
    out: TextIO = sys.stdout,
    as_json: bool = False,
    show_pending: bool = False,
    err: TextIO = sys.stderr,
    metrics: str | None = None,
    maintain: bool = True,
) -> int:
    collector = server = None
    if metrics is not None:  # before anything starts: a bad address is a one-line error
        from flowtui.metrics import Metrics, serve

        collector = Metrics()
        server, url = serve(metrics, collector)
        print(f"flowtui: metrics on {url}", file=err, flush=True)
    store = open_store(config.path, config.monitor.database)
    bus = EventBus()
    sub = bus.subscribe()
    engine = Engine(config, store, bus)
    alerting = AlertEngine(config, store, bus, build_notifiers(config.notify, bell_stream=err))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def printer() -> None:
        async for event in sub:
            if collector is not None:
                collector.event(event)
            if isinstance(event, ProbeCompleted):
                r = event.result
                if r.state is ProbeState.PENDING and not show_pending:
                    continue
                route = engine.routes.get(r.route)
                print(result_json(r) if as_json else result_line(r, route), file=out, flush=True)
            elif isinstance(event, (AlertRaised, AlertResolved)):
                kind = "resolved" if isinstance(event, AlertResolved) else "escalated" if event.escalated else "fired"
                print(alert_json(event.alert, kind) if as_json else alert_line(event.alert, kind), file=out, flush=True)
            elif isinstance(event, NotifierFailed):
                print(f"flowtui: notifier {event.notifier} failed for {plain_text(event.alert_id)}: "
                      f"{plain_text(event.detail)}", file=err, flush=True)
            elif isinstance(event, DmarcReportsImported):  # status, not results: stderr
                print(f"flowtui: dmarc: {event.imported} reports imported, {event.duplicates} duplicates, "
                      f"{len(event.errors)} errors", file=err, flush=True)
                for line in event.errors[:20]:
                    print(f"flowtui: dmarc: {plain_text(line)}", file=err, flush=True)
            elif isinstance(event, MailboxStateChanged):  # status, not results: stderr
                detail = f" ({plain_text(event.detail)})" if event.detail else ""
                print(f"flowtui: mailbox {plain_text(event.mailbox)}: {event.state}{detail}", file=err, flush=True)

    printing = asyncio.create_task(printer())
    maintainer = Maintainer.for_config(store, config) if maintain else None
    maintaining = None
    dmarc_task = None
    try:
        await alerting.start()  # before the engine: it sees every result
        await engine.start()
        if maintainer is not None:  # roll-ups and retention, every few minutes, off the loop
            maintaining = asyncio.create_task(maintainer.run())
        if config.dmarc is not None:
            from flowtui.core.dmarc.collect import DmarcCollector

            dmarc_task = asyncio.create_task(DmarcCollector(config.dmarc, store, bus).run(), name="dmarc")
        await stop.wait()
    finally:
        if dmarc_task is not None:
            dmarc_task.cancel()
            await asyncio.gather(dmarc_task, return_exceptions=True)
        if maintainer is not None and maintaining is not None:
            maintainer.stop()
            maintaining.cancel()
            await asyncio.gather(maintaining, return_exceptions=True)
            await asyncio.to_thread(maintainer.wait_idle)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await engine.stop()
        await alerting.stop()
        sub.close()
        await asyncio.gather(printing, return_exceptions=True)
        store.close()
        if server is not None:
            server.shutdown()
            server.server_close()
    return 0
