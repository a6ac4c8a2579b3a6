"""The alert rule state machine, driven by scenario files in tests/data/alerts/.

Each file holds optional [route] settings, [[rules]] (the keys of [[alerts]];
none: the defaults) and [[steps]]: a probe result, a tick or a DNS check at a
time, with the alerts that step fired, escalated and resolved. Alerts are
named rule/severity (DNS ones rule/severity/problem).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tomllib
from pathlib import Path

import pytest

from flowtui.core.alerts import AlertBook, DnsObservation, Transition, alert_key
from flowtui.core.config import parse_alert_rules, parse_duration
from flowtui.core.model import AuthResults, Hop, ImapSettings, MethodResult, ProbeResult, ProbeState, Route, Security, ServerSettings

DATA = Path(__file__).parents[1] / "data" / "alerts"
FILES = sorted(DATA.glob("*.toml"))


def _route(spec: dict) -> Route:
    server = ServerSettings(host="127.0.0.1", port=25, security=Security.NONE)
    imap = ImapSettings(host="127.0.0.1", port=143, security=Security.NONE)
    extra = {}
    if "warn" in spec:
        extra["warn_s"] = parse_duration(spec["warn"])
    if "crit" in spec:
        extra["crit_s"] = parse_duration(spec["crit"])
    return Route(name="r", mail_from="a@x.test", rcpt_to="b@x.test", smtp=server, imap=imap,
                 require_tls=spec.get("require_tls", False), **extra)


def _probe(p: dict) -> ProbeResult:
    hosts = p.get("hops", [])
    tls = p.get("tls", [None] * len(hosts))
    hops = tuple(Hop(index=i, by_host=h, tls=t) for i, (h, t) in enumerate(zip(hosts, tls)))
    auth = None
    if "auth" in p:
        a = {k: MethodResult(k, v) for k, v in p["auth"].items()}
        auth = AuthResults(spf=a.get("spf"), dkim=a.get("dkim"), dmarc=a.get("dmarc"))
    return ProbeResult(
        route="r", probe_id=f"p{p['seq']}", seq=p["seq"], state=ProbeState(p["state"]), sent_at=float(p["sent"]),
        total_s=p.get("total"), transit_s=p.get("transit"), folder=p.get("folder"), hops=hops, auth=auth,
        error=p.get("error"), error_phase=p.get("error_phase"),
    )


def _name(t: Transition) -> str:
    base = f"{t.alert.rule}/{t.alert.severity}"
    return base if t.alert.route else f"{base}/{alert_key(t.alert.id).rsplit(' ', 1)[1]}"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path) -> None:
    doc = tomllib.loads(path.read_text())
    assert doc.get("description") and doc["steps"]
    book = AlertBook(parse_alert_rules(doc.get("rules"), path.name), {"r": _route(doc.get("route", {}))})
    for i, step in enumerate(doc["steps"]):
        now = float(step["at"])
        if "probe" in step:
            got = book.observe(_probe(step["probe"]), now)
        elif "dns" in step:
            got = book.observe_dns(DnsObservation(**step["dns"]), now)
        else:
            assert step.get("tick"), f"step {i}: probe, dns or tick"
            got = book.tick(now)
        for kind in ("fired", "escalated", "resolved"):
            names = sorted(_name(t) for t in got if t.kind == kind)
            assert names == sorted(step.get(kind, [])), f"{path.name} step {i} (at {now}): {kind} {names}: {[t.alert.message for t in got]}"
        for t in got:
            assert t.alert.message and (t.alert.state == "resolved") == (t.kind == "resolved")


def test_a_restored_firing_alert_does_not_fire_again() -> None:
    from flowtui.core.alerts import default_rules

    first = AlertBook(default_rules(), {"r": _route({})})
    failed = _probe({"seq": 1, "state": "send_failed", "sent": 0})
    [fired] = first.observe(failed, 1.0)
    again = AlertBook(default_rules(), {"r": _route({})})  # a restarted monitor
    again.restore([fired.alert], [failed])
    assert again.observe(_probe({"seq": 2, "state": "send_failed", "sent": 60}), 61.0) == []
    [resolved] = again.observe(_probe({"seq": 3, "state": "delivered", "sent": 120, "total": 1}), 121.0)
    assert resolved.kind == "resolved" and resolved.alert.id == fired.alert.id


async def test_an_acknowledgement_stored_elsewhere_stops_notifications(tmp_path) -> None:
    """`flowtui alerts --ack ID` writes the database; a running monitor reads it back
    and sends no more notifications for that alert (an escalation included)."""
    from flowtui.core.alerting import AlertEngine
    from flowtui.core.alerts import default_rules
    from flowtui.core.events import EventBus
    from flowtui.core.model import Config, MonitorSettings
    from flowtui.core.storage import Store

    class Recorder:
        name = "recorder"

        def __init__(self) -> None:
            self.sent: list[tuple[str, str]] = []

        def wants(self, kind, alert) -> bool:
            return True

        async def send(self, kind, alert):
            self.sent.append((kind, alert.id))
            return None

    store = Store(tmp_path / "a.db")
    config = Config(path=str(tmp_path / "c.toml"), monitor=MonitorSettings(database=str(tmp_path / "a.db")),
                    routes=(_route({}),), alerts=default_rules())
    rec = Recorder()
    engine = AlertEngine(config, store, EventBus(), [rec])
    try:
        [fired] = engine.book.observe(_probe({"seq": 1, "state": "send_failed", "sent": 0}), 1.0)
        engine.apply([fired])
        await asyncio.sleep(0.05)
        assert rec.sent == [("fired", fired.alert.id)]
        await store.flush()
        assert await engine.sync_acks() == 0  # nothing acknowledged yet

        store.ack_alert(fired.alert.id, 5.0)  # as `flowtui alerts --ack` does, on the same file
        await store.flush()
        assert await engine.sync_acks() == 1
        assert await engine.sync_acks() == 0  # taken once
        escalated = Transition("escalated", dataclasses.replace(engine.book.firing[alert_key(fired.alert.id)].record,
                                                                severity="crit"))
        engine.apply([escalated])
        await asyncio.sleep(0.05)
        assert rec.sent == [("fired", fired.alert.id)]  # no notification after the acknowledgement
    finally:
        await engine.stop()
        store.close()


def test_dns_values_from_before_a_restart_make_a_change_meanwhile_a_change(tmp_path) -> None:
    from flowtui.core.storage import DnsCheckRecord, Store

    with Store(tmp_path / "d.db") as store:
        store.write_dns_check(DnsCheckRecord("example.com", "MX", 100.0, "10 mx1.example.com.", None))
        store.write_dns_check(DnsCheckRecord("example.com", "MX", 200.0, "10 mx2.example.com.", None))
        store.write_dns_check(DnsCheckRecord("example.com", "MX", 300.0, None, "timed out"))  # no answer: not a value
        store.write_dns_check(DnsCheckRecord("example.com", "SPF", 200.0, "v=spf1 -all", None))
        store.flush_sync()
        values = store.last_dns_values()
    assert values == {("example.com", "MX"): "10 mx2.example.com.", ("example.com", "SPF"): "v=spf1 -all"}

    rules = parse_alert_rules([{"kind": "dns"}])
    book = AlertBook(rules, {})
    book.restore_dns(values)
    assert book.observe_dns(DnsObservation("example.com", "SPF", value="v=spf1 -all"), 400.0) == []
    [changed] = book.observe_dns(DnsObservation("example.com", "MX", value="10 evil.example.net."), 400.0)
    assert changed.kind == "fired" and "mx2.example.com" in changed.alert.message and "evil" in changed.alert.message
    fresh = AlertBook(rules, {})  # without the restore, the first sight is only a baseline
    assert fresh.observe_dns(DnsObservation("example.com", "MX", value="10 evil.example.net."), 400.0) == []


async def test_a_mailbox_that_is_down_or_stays_unreachable_is_an_alert(tmp_path) -> None:
    from flowtui.core.alerting import AlertEngine
    from flowtui.core.alerts import MAILBOX_GRACE_S, default_rules
    from flowtui.core.events import EventBus
    from flowtui.core.model import Config, MonitorSettings
    from flowtui.core.storage import Store

    now = [1000.0]
    store = Store(tmp_path / "m.db")
    config = Config(path=str(tmp_path / "c.toml"), monitor=MonitorSettings(database=str(tmp_path / "m.db")),
                    routes=(_route({}),), alerts=default_rules())
    engine = AlertEngine(config, store, EventBus(), [], clock=lambda: now[0])
    try:
        kinds = lambda ts: [(t.kind, t.alert.rule) for t in ts]  # noqa: E731
        assert engine.observe_mailbox("u@h:993", "connecting") == []
        assert engine.observe_mailbox("u@h:993", "idle") == []  # came up: nothing to say
        # a refused login: at once, with the server's words
        [fired] = engine.observe_mailbox("u@h:993", "down", "login refused: [AUTHENTICATIONFAILED] no")
        assert fired.kind == "fired" and fired.alert.severity == "crit" and "AUTHENTICATIONFAILED" in fired.alert.message
        now[0] += 5
        assert engine.observe_mailbox("u@h:993", "connecting") == []  # still the same spell: still firing
        now[0] += 5
        assert kinds(engine.observe_mailbox("u@h:993", "idle")) == [("resolved", "mailbox")]
        # a connection that drops and keeps failing: only after the grace time, however it flaps
        now[0] += 1
        assert engine.observe_mailbox("u@h:993", "reconnecting", "Connection refused") == []
        for _ in range(int(MAILBOX_GRACE_S // 10) - 1):
            now[0] += 10
            assert engine.observe_mailbox("u@h:993", "connecting") == []
            assert engine.observe_mailbox("u@h:993", "reconnecting", "Connection refused") == []
        now[0] += 15
        [late] = engine.observe_mailbox("u@h:993", "reconnecting", "Connection refused")
        assert late.kind == "fired" and "not connected for" in late.alert.message
        assert kinds(engine.observe_mailbox("u@h:993", "polling")) == [("resolved", "mailbox")]
        await store.flush()
        assert {a.rule for a in store.alerts()} == {"mailbox"}
    finally:
        await engine.stop()
        store.close()
