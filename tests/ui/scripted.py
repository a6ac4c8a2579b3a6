"""Fixed data for UI tests: a Store filled with scripted probe results and a frozen clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from flowtui.core.model import (
    AuthResults, Config, Hop, ImapSettings, MethodResult, MonitorSettings, ProbeResult, ProbeState, Route,
    Security, ServerSettings,
)
from flowtui.core.storage import Store

NOW = 1_780_000_000.0  # the frozen clock (2026-05-28T20:26:40Z)


def route(name: str, **kw) -> Route:
    smtp = ServerSettings(host="127.0.0.1", port=2525, security=Security.NONE)
    imap = ImapSettings(host="127.0.0.1", port=1143, security=Security.NONE)
    return Route(name=name, mail_from="probe@example.test", rcpt_to="probe@example.test", smtp=smtp, imap=imap,
                 interval_s=60, timeout_s=120, **kw)


def hops_for(sent: float, delays: list[float], names: list[str]) -> tuple[Hop, ...]:
    out = []
    t = datetime.fromtimestamp(int(sent), timezone.utc)
    prev = None
    for i, (d, by) in enumerate(zip(delays, names)):
        t = t + timedelta(seconds=d)
        out.append(Hop(
            index=i, from_host=prev or "client.example.test", from_ip="127.0.0.1", by_host=by,
            with_protocol="ESMTPS" if i < len(names) - 1 else "LMTP", tls=i < len(names) - 1, timestamp=t,
            delay_s=None if i == 0 else d, raw=f"from {prev or 'client.example.test'} ([127.0.0.1]) by {by} with "
            f"ESMTP id ABC{i}; {t:%a, %d %b %Y %H:%M:%S} +0000",
        ))
        prev = by
    return tuple(out)


AUTH = AuthResults(
    authserv_id="mailbox.demo.test",
    spf=MethodResult("spf", "pass"), dkim=MethodResult("dkim", "none"), dmarc=MethodResult("dmarc", "pass"),
)


def results() -> list[ProbeResult]:
    out: list[ProbeResult] = []
    names = ["hop1.demo.test", "hop2.demo.test", "mailbox.demo.test"]
    slow_names = ["hop1.demo.test", "hop2.demo.test", "hop3.demo.test", "mailbox.demo.test"]
    for i in range(30):
        sent = NOW - 60 * (30 - i)
        total = 0.8 + (i % 5) * 0.1
        out.append(ProbeResult(
            route="hq-to-mailbox", probe_id=f"ok{i:03d}", seq=i + 1, state=ProbeState.DELIVERED, sent_at=sent,
            submit_s=0.2, transit_s=total - 0.2, total_s=total, detected_at=sent + total, folder="INBOX",
            phases=(("connect", 0.01), ("tls", 0.05), ("ehlo", 0.06), ("auth", 0.09), ("data_accepted", 0.2),
                    ("detected", total)),
            hops=hops_for(sent, [0, 0, 1], names), auth=AUTH, content_ok=True,
        ))
        slow_total = 4.0 + (i % 3)
        path = slow_names if i != 29 else ["hop1.demo.test", "relay9.demo.test", "hop3.demo.test", "mailbox.demo.test"]
        out.append(ProbeResult(
            route="branch-slow", probe_id=f"sl{i:03d}", seq=i + 1, state=ProbeState.DELIVERED, sent_at=sent,
            submit_s=0.3, transit_s=slow_total - 0.3, total_s=slow_total, detected_at=sent + slow_total,
            folder="INBOX", phases=(("connect", 0.02), ("data_accepted", 0.3), ("detected", slow_total)),
            hops=hops_for(sent, [0, 1, 3, 0], path), auth=AUTH, content_ok=True,
        ))
        state = ProbeState.LOST if i % 7 == 3 else (ProbeState.SEND_FAILED if i == 27 else ProbeState.DELIVERED)
        delivered = state is ProbeState.DELIVERED
        out.append(ProbeResult(
            route="dc-flaky", probe_id=f"fl{i:03d}", seq=i + 1, state=state, sent_at=sent,
            submit_s=0.25 if state is not ProbeState.SEND_FAILED else None,
            transit_s=1.0 if delivered else None, total_s=1.25 if delivered else None,
            detected_at=sent + 1.25 if delivered else None,
            error="Connection refused" if state is ProbeState.SEND_FAILED else None,
            error_phase="connect" if state is ProbeState.SEND_FAILED else None,
            hops=hops_for(sent, [0, 1, 0], names) if delivered else (), auth=AUTH if delivered else None,
        ))
    return out


def scripted(tmp: Path) -> tuple[Config, Store]:
    db = tmp / "scripted.db"
    config = Config(path=str(tmp / "cfg.toml"), monitor=MonitorSettings(database=str(db)),
                    routes=(route("hq-to-mailbox"), route("branch-slow"), route("dc-flaky")))
    store = Store(db)
    for r in results():
        store.write_result(r)
    store.flush_sync()
    return config, store
