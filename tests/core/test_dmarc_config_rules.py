"""[dmarc] config, DMARC alert rules over a real store, reverse DNS cache."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import tomli_w

from flowtui.core.alerts import AlertBook
from flowtui.core.config import load_config
from flowtui.core.dmarc.importer import import_bytes
from flowtui.core.dmarc.rdns import resolve_missing
from flowtui.core.dmarc.rules import conditions
from flowtui.core.dmarc.summary import dmarc_summary
from flowtui.core.errors import UserError
from flowtui.core.model import AlertRule
from flowtui.core.storage import Store

ROUTE = {
    "name": "r", "from": "a@example.com", "to": "b@example.com",
    "smtp": {"host": "127.0.0.1", "security": "none"}, "imap": {"host": "127.0.0.1", "security": "none"},
}


def _cfg(tmp_path: Path, dmarc=None, alerts=None) -> Path:
    doc = {"monitor": {"database": "x.db"}, "routes": [ROUTE]}
    if dmarc is not None:
        doc["dmarc"] = dmarc
    if alerts is not None:
        doc["alerts"] = alerts
    p = tmp_path / "c.toml"
    p.write_text(tomli_w.dumps(doc))
    p.chmod(0o600)
    return p


IMAP = {"host": "127.0.0.1", "port": 1143, "security": "none", "username": "u", "password": "p"}


def test_dmarc_section_is_read(tmp_path):
    c = load_config(_cfg(tmp_path, {"imap": IMAP, "folder": "Reports/DMARC", "interval": "5m", "on_import": "move:Done"}))
    assert c.dmarc.folder == "Reports/DMARC" and c.dmarc.interval_s == 300 and c.dmarc.on_import == "move"
    assert c.dmarc.move_to == "Done" and c.dmarc.imap.port == 1143 and c.dmarc.imap.password.value == "p"
    assert [r.kind for r in c.alerts if r.kind.startswith("dmarc")] == ["dmarc_pass_rate"]  # a default rule
    c = load_config(_cfg(tmp_path, {"imap": IMAP}))
    assert (c.dmarc.folder, c.dmarc.on_import, c.dmarc.interval_s) == ("INBOX", "remember", 900)
    assert load_config(_cfg(tmp_path)).dmarc is None


@pytest.mark.parametrize("dmarc, expected", [
    ({"imap": IMAP, "fodler": "x"}, 'c.toml: dmarc: unknown key "fodler" (did you mean "folder"?)'),
    ({"folder": "x"}, "c.toml: dmarc: missing required table [dmarc.imap]"),
    ({"imap": IMAP, "on_import": "delete"}, 'c.toml: dmarc.on_import: expected "remember", "seen" or "move:FOLDER", got "delete"'),
    ({"imap": IMAP, "on_import": "move:"}, "c.toml: dmarc.on_import: expected \"move:FOLDER\""),
    ({"imap": IMAP, "folder": "D", "on_import": "move:D"}, "c.toml: dmarc.on_import: moves reports into the folder they are read from"),
    ({"imap": {**IMAP, "port": "x"}}, 'c.toml: [dmarc]: imap.port: expected an integer 1-65535, got "x"'),
    ({"imap": {**IMAP, "folders": ["INBOX"]}}, 'c.toml: dmarc.imap.folders: the reports folder is [dmarc] folder = "..."'),
    ({"imap": IMAP, "interval": "soon"}, "c.toml: dmarc.interval: expected a duration"),
])
def test_dmarc_errors_are_one_line_naming_the_key(tmp_path, dmarc, expected):
    with pytest.raises(UserError) as err:
        load_config(_cfg(tmp_path, dmarc))
    assert ("c.toml: " + str(err.value).split("c.toml: ", 1)[1]).startswith(expected), str(err.value)
    assert "\n" not in str(err.value) and "p" != str(err.value)


def test_dmarc_rule_keys(tmp_path):
    c = load_config(_cfg(tmp_path, {"imap": IMAP}, alerts=[
        {"kind": "dmarc_pass_rate", "pass_rate": 0.95, "domains": ["Example.COM."]},
        {"kind": "dmarc_new_source", "volume": 100, "window": "2d"},
        {"kind": "dmarc_failing"},
    ]))
    rules = {r.kind: r for r in c.alerts}
    assert rules["dmarc_pass_rate"].pass_rate == 0.95 and rules["dmarc_pass_rate"].domains == ("example.com",)
    assert rules["dmarc_new_source"].volume == 100 and rules["dmarc_new_source"].window_s == 2 * 86400
    assert rules["dmarc_failing"].window_s == 7 * 86400
    for alerts, expected in [
        ([{"kind": "dmarc_pass_rate", "pass_rate": 90}], "alerts[0].pass_rate: expected a number above 0 up to 1"),
        ([{"kind": "lost", "volume": 3}], 'alerts[0].volume: only dmarc_* rules take "volume"'),
        ([{"kind": "dmarc_failing", "routes": ["r"]}], "alerts[0].routes: dmarc rules watch domains"),
        ([{"kind": "dmarc_failng"}], 'did you mean "dmarc_failing"?'),
    ]:
        with pytest.raises(UserError, match=re.escape(expected)):
            load_config(_cfg(tmp_path, {"imap": IMAP}, alerts=alerts))


# ---- rules over a real store --------------------------------------------------------

def _xml(rid: str, records, end: int, domain: str = "example.com") -> bytes:
    rows = "".join(
        f"<record><row><source_ip>{ip}</source_ip><count>{n}</count><policy_evaluated><disposition>none</disposition>"
        f"<dkim>{d}</dkim><spf>{s}</spf></policy_evaluated></row><identifiers><header_from>{domain}</header_from>"
        f"</identifiers></record>" for ip, n, d, s in records)
    return (f"<feedback><report_metadata><org_name>org</org_name><report_id>{rid}</report_id><date_range><begin>{end - 86400}"
            f"</begin><end>{end}</end></date_range></report_metadata><policy_published><domain>{domain}</domain><p>none</p>"
            f"</policy_published>{rows}</feedback>").encode()


def test_rules_fire_and_resolve(tmp_path):
    now = 1_800_000_000
    rate = AlertRule(name="rate", kind="dmarc_pass_rate", window_s=7 * 86400, pass_rate=0.9, volume=10)
    new = AlertRule(name="new", kind="dmarc_new_source", window_s=2 * 86400, volume=20)
    failing = AlertRule(name="failing", kind="dmarc_failing", window_s=7 * 86400, volume=30)
    book = AlertBook((rate, new, failing), {})
    with Store(tmp_path / "r.db") as store:
        def check(rule, at):
            return book.observe_dmarc(rule, store.read(lambda c: conditions(rule, c, at)), at)

        import_bytes(store, "a", _xml("a", [("192.0.2.1", 100, "pass", "pass")], now - 5 * 86400))
        assert check(rate, now) == [] and check(new, now) == [] and check(failing, now) == []
        import_bytes(store, "b", _xml("b", [("198.51.100.9", 40, "fail", "fail"), ("192.0.2.1", 10, "pass", "fail")], now - 3600))
        t = check(rate, now)
        assert [(x.kind, x.alert.rule) for x in t] == [("fired", "rate")]
        assert "example.com is 73%" in t[0].alert.message and t[0].alert.id.startswith("rate|example.com|")
        assert check(rate, now) == []  # still firing: not again
        t = check(new, now)
        assert [x.kind for x in t] == ["fired"] and "new source 198.51.100.9 sent 40" in t[0].alert.message
        assert [x.kind for x in check(failing, now)] == ["fired"]
        # a week later the failing report has left the window: everything resolves
        later = now + 8 * 86400
        assert [x.kind for x in check(rate, later)] == ["resolved"]
        assert [x.kind for x in check(new, later)] == ["resolved"]
        assert [x.kind for x in check(failing, later)] == ["resolved"]


def test_domains_filter_and_untrusted_subjects(tmp_path):
    now = 1_800_000_000
    rule = AlertRule(name="rate", kind="dmarc_pass_rate", pass_rate=0.9, volume=1, domains=("example.org",))
    with Store(tmp_path / "r.db") as store:
        import_bytes(store, "a", _xml("a", [("192.0.2.1", 5, "fail", "fail")], now, domain="example.com"))
        import_bytes(store, "b", _xml("b", [("192.0.2.1", 5, "fail", "fail")], now, domain="ex|[b]x[/b]"))
        assert store.read(lambda c: conditions(rule, c, now)) == {}
        everything = AlertRule(name="rate", kind="dmarc_pass_rate", pass_rate=0.9, volume=1)
        conds = store.read(lambda c: conditions(everything, c, now))
        assert set(conds) == {"example.com", "ex/\\[b]x\\[/b]"}  # no | (the id separator), markup escaped


def test_rdns_is_cached_and_failures_remembered(tmp_path):
    calls = []

    def lookup(ip):
        calls.append(ip)
        if ip == "192.0.2.3":
            raise TimeoutError("no answer")
        return {"192.0.2.1": "mx1.example.com"}.get(ip)

    with Store(tmp_path / "r.db") as store:
        import_bytes(store, "a", _xml("a", [("192.0.2.1", 5, "pass", "pass"), ("192.0.2.2", 1, "fail", "fail"),
                                            ("192.0.2.3", 1, "fail", "fail")], int(time.time())))
        found = resolve_missing(store, ["192.0.2.1", "192.0.2.2", "192.0.2.3"], lookup)
        assert found == {"192.0.2.1": "mx1.example.com", "192.0.2.2": None, "192.0.2.3": None}
        assert resolve_missing(store, ["192.0.2.1", "192.0.2.2", "192.0.2.3"], lookup) == {}
        assert calls == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]  # once each
        s = store.read(lambda c: dmarc_summary(c, since_s=86400 * 3))
        assert s["domains"][0]["top_sources"][0]["rdns"] == "mx1.example.com" and s["unresolved"] == []


def test_check_lists_dmarc_and_warns_about_plain_passwords(tmp_path):
    from flowtui.checkcmd import render
    from flowtui.core.config import config_warnings

    c = load_config(_cfg(tmp_path, {"imap": {**IMAP, "host": "imap.example.com"}, "folder": "DMARC", "on_import": "move:Done"}))
    text = render(c)
    assert "dmarc reports: folder DMARC, every 15m, on import move:Done" in text and "(password: literal)" in text
    assert any("[dmarc]: imap.security: the password is sent unencrypted to imap.example.com" in w for w in config_warnings(c))


async def test_alert_engine_runs_dmarc_rules_after_an_import_and_notifies(tmp_path):
    import asyncio

    from flowtui.core.alerting import AlertEngine
    from flowtui.core.events import AlertRaised, DmarcReportsImported, EventBus
    from flowtui.core.model import Config, MonitorSettings, NotifierSettings
    from flowtui.core.notify import Notifier

    sent = []

    class Recorder(Notifier):
        name = "recorder"

        async def send(self, event, alert):
            sent.append((event, alert.rule, alert.message))

    rule = AlertRule(name="dmarc_pass_rate", kind="dmarc_pass_rate", window_s=7 * 86400, volume=10)
    config = Config(path=str(tmp_path / "c.toml"), monitor=MonitorSettings(database=str(tmp_path / "a.db")),
                    routes=(), alerts=(rule,))
    now = time.time()
    with Store(config.monitor.database) as store:
        bus = EventBus()
        events = bus.subscribe()
        engine = AlertEngine(config, store, bus, [Recorder(NotifierSettings(kind="log"))], tick_s=0.05)
        await engine.start()
        try:
            await asyncio.to_thread(import_bytes, store, "a", _xml("a", [("192.0.2.1", 10, "pass", "pass"),
                                                                     ("198.51.100.1", 10, "fail", "fail")], int(now)))
            bus.publish(DmarcReportsImported(1))
            for _ in range(100):
                if sent:
                    break
                await asyncio.sleep(0.05)
        finally:
            await engine.stop()
        raised = [e for e in events.drain() if isinstance(e, AlertRaised)]
        assert [e.alert.rule for e in raised] == ["dmarc_pass_rate"]
        assert sent == [("fired", "dmarc_pass_rate", "DMARC pass rate of example.com is 50% (10 of 20 messages) < 90%")]
        assert [a.rule for a in store.alerts(state="fired")] == ["dmarc_pass_rate"]


def test_a_restarted_monitor_does_not_fire_a_firing_dmarc_alert_again():
    rule = AlertRule(name="rate", kind="dmarc_pass_rate")
    cond = {"example.com": ("warn", "DMARC pass rate of example.com is 50%")}
    first = AlertBook((rule,), {})
    fired = first.observe_dmarc(rule, cond, 100.0)
    assert [t.kind for t in fired] == ["fired"]
    again = AlertBook((rule,), {})
    again.restore([fired[0].alert])
    assert again.observe_dmarc(rule, cond, 200.0) == []
    resolved = again.observe_dmarc(rule, {}, 300.0)
    assert [(t.kind, t.alert.id) for t in resolved] == [("resolved", fired[0].alert.id)]
    assert again.tick(400.0) == []  # not a route rule: ticks leave it alone


def test_dmarc_mailbox_can_log_in_with_oauth2(tmp_path):
    imap = {"host": "127.0.0.1", "port": 993, "security": "tls", "username": "dmarc@example.com",
            "auth": "xoauth2", "token_command": "printf tok"}
    c = load_config(_cfg(tmp_path, {"imap": imap}))
    assert c.dmarc.imap.auth == "xoauth2"
    assert c.dmarc.imap.oauth2 is not None and c.dmarc.imap.oauth2.token_command == "printf tok"


def test_the_system_resolver_is_never_asked_about_non_public_addresses(monkeypatch):
    """Lab and test reports use documentation and private addresses: with no [dns]
    nameservers configured, no query leaves for them (the public DNS has nothing to say)."""
    import dns.resolver

    from flowtui.core.dmarc.rdns import dns_lookup

    asked = []
    monkeypatch.setattr(dns.resolver.Resolver, "resolve", lambda self, *a, **k: asked.append(a) or [])
    lookup = dns_lookup(())
    for ip in ("192.0.2.10", "198.51.100.7", "203.0.113.1", "10.1.2.3", "127.0.0.1", "2001:db8::1", "fe80::1%eth0"):
        assert lookup(ip) is None
    assert asked == []
