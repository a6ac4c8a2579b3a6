"""The Prometheus collector and endpoint, in-process (the lab run is in tests/integration)."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowtui.core.errors import UserError
from flowtui.core.events import AlertRaised, AlertResolved, ProbeCompleted
from flowtui.core.model import Hop, ProbeResult, ProbeState
from flowtui.core.storage import AlertRecord
from flowtui.metrics import Metrics, parse_address, serve


def _r(pid, state, total=None, route="r1"):
    return ProbeResult(route=route, probe_id=pid, seq=1, state=state, sent_at=1.0, submit_s=0.5,
                       transit_s=None if total is None else total - 0.5, total_s=total, detected_at=100.0,
                       hops=(Hop(index=0), Hop(index=1, delay_s=2.0)) if total else ())


def test_scraped_values_follow_the_results_and_alerts():
    m = Metrics()
    server, url = serve("127.0.0.1:0", m)
    try:
        for ev in (ProbeCompleted(_r("a", ProbeState.PENDING)), ProbeCompleted(_r("a", ProbeState.DELIVERED, 3.0)),
                   ProbeCompleted(_r("b", ProbeState.LOST)), ProbeCompleted(_r("b", ProbeState.LATE, 700.0)),
                   AlertRaised(AlertRecord(id="x", route="r1", rule="lost", severity="crit", state="fired", fired_at=1))):
            m.event(ev)
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        s = {(x.name, tuple(sorted(x.labels.items()))): x.value
             for f in text_string_to_metric_families(text) for x in f.samples}
        assert s[("flowtui_probe_results_total", (("route", "r1"), ("state", "delivered")))] == 1
        assert s[("flowtui_probe_results_total", (("route", "r1"), ("state", "lost")))] == 1
        assert s[("flowtui_probe_results_total", (("route", "r1"), ("state", "late")))] == 1
        assert s[("flowtui_probe_submit_seconds_count", (("route", "r1"),))] == 2  # once per probe
        assert s[("flowtui_probe_total_seconds_count", (("route", "r1"),))] == 2
        assert s[("flowtui_probe_total_seconds_sum", (("route", "r1"),))] == pytest.approx(703.0)
        assert s[("flowtui_hop_delay_seconds", (("hop", "1"), ("route", "r1")))] == 2.0
        assert s[("flowtui_alerts_firing", (("route", "r1"),))] == 1
        m.event(AlertResolved(AlertRecord(id="x", route="r1", rule="lost", severity="crit", state="resolved",
                                          fired_at=1, resolved_at=2)))
        assert m.alerts_firing.labels("r1")._value.get() == 0
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("text", ["9464", "127.0.0.1:", "127.0.0.1:99999", "[::1:9464", "[nope]:9464", "x:y"])
def test_bad_addresses_are_one_line(text):
    with pytest.raises(UserError) as exc:
        parse_address(text)
    assert str(exc.value).startswith("--metrics:") and "\n" not in str(exc.value)


def test_a_port_in_use_is_one_line():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        with pytest.raises(UserError) as exc:
            serve(f"127.0.0.1:{s.getsockname()[1]}", Metrics())
        assert "cannot listen on" in str(exc.value) and "\n" not in str(exc.value)
    finally:
        s.close()


def test_ipv6_loopback():
    assert parse_address("[::1]:9464") == ("::1", 9464)
    server, url = serve("[::1]:0", Metrics())
    try:
        assert url.startswith("http://[::1]:")
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert b"flowtui_probe_results" in resp.read()
    finally:
        server.shutdown()
        server.server_close()
