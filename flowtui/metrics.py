"""``flowtui run --headless --metrics HOST:PORT``: Prometheus metrics of the probes.

A subscriber of the engine's events, like the printer: every result and
alert updates a private registry, which prometheus-client's HTTP server
exposes at ``/metrics``. Metric names (also in README.md):

- ``flowtui_probe_results_total{route,state}`` counter: results reported
  (a probe lost and then seen counts once as lost and once as late)
- ``flowtui_probe_submit_seconds{route}``, ``flowtui_probe_transit_seconds{route}``,
  ``flowtui_probe_total_seconds{route}`` histograms: submit of every probe
  that was submitted (once per probe), transit and total of probes that
  arrived (delivered or late)
- ``flowtui_probe_hops{route}`` gauge: hops of the newest delivered probe
- ``flowtui_hop_delay_seconds{route,hop}`` gauge: that probe's delay per hop (hop index)
- ``flowtui_last_delivery_timestamp_seconds{route}`` gauge (epoch)
- ``flowtui_alerts_fired_total{route,rule,severity}`` counter
- ``flowtui_alerts_firing{route}`` gauge
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from flowtui.core.errors import UserError
from flowtui.core.events import AlertRaised, AlertResolved, ProbeCompleted
from flowtui.core.model import ProbeResult, ProbeState

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
_SEEN = 10_000  # probe ids remembered, so submit is observed once per probe


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.results = Counter("flowtui_probe_results", "Probe results reported, by final state", ["route", "state"], registry=r)
        self.submit = Histogram("flowtui_probe_submit_seconds", "SMTP submit time (connect to 250 after DATA)",
                                ["route"], buckets=BUCKETS, registry=r)
        self.transit = Histogram("flowtui_probe_transit_seconds", "Transit time (250 to seen in the mailbox)",
                                 ["route"], buckets=BUCKETS, registry=r)
        self.total = Histogram("flowtui_probe_total_seconds", "Round trip (connect to seen in the mailbox)",
                               ["route"], buckets=BUCKETS, registry=r)
        self.hops = Gauge("flowtui_probe_hops", "Hops of the newest delivered probe", ["route"], registry=r)
        self.hop_delay = Gauge("flowtui_hop_delay_seconds", "Delay per hop of the newest delivered probe",
                               ["route", "hop"], registry=r)
        self.last_delivery = Gauge("flowtui_last_delivery_timestamp_seconds", "When the newest probe arrived (epoch)",
                                   ["route"], registry=r)
        self.alerts_fired = Counter("flowtui_alerts_fired", "Alerts fired", ["route", "rule", "severity"], registry=r)
        self.alerts_firing = Gauge("flowtui_alerts_firing", "Alerts firing now", ["route"], registry=r)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._firing: dict[str, str] = {}  # alert id -> route label

    def observe(self, r: ProbeResult) -> None:
        if r.state is ProbeState.PENDING:
            return
        self.results.labels(r.route, r.state.value).inc()
        if r.probe_id not in self._seen:
            self._seen[r.probe_id] = None
            if len(self._seen) > _SEEN:
                self._seen.popitem(last=False)
            if r.submit_s is not None:
                self.submit.labels(r.route).observe(r.submit_s)
        if r.state in (ProbeState.DELIVERED, ProbeState.LATE):
            if r.transit_s is not None:
                self.transit.labels(r.route).observe(r.transit_s)
            if r.total_s is not None:
                self.total.labels(r.route).observe(r.total_s)
            if r.detected_at is not None:
                self.last_delivery.labels(r.route).set(r.detected_at)
            if r.hops:
                self.hops.labels(r.route).set(len(r.hops))
                for h in r.hops:
                    if h.delay_s is not None:
                        self.hop_delay.labels(r.route, str(h.index)).set(h.delay_s)

    def event(self, event: Any) -> None:
        if isinstance(event, ProbeCompleted):
            self.observe(event.result)
        elif isinstance(event, AlertRaised):
            a = event.alert
            route = a.route or ""
            if not event.escalated:
                self.alerts_fired.labels(route, a.rule, a.severity).inc()
            if a.id not in self._firing:
                self._firing[a.id] = route
                self.alerts_firing.labels(route).inc()
        elif isinstance(event, AlertResolved):
            route = self._firing.pop(event.alert.id, None)
            if route is not None:
                self.alerts_firing.labels(route).dec()


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (all addresses) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f'--metrics: expected HOST:PORT such as "127.0.0.1:9464", got "{text}"', code=2)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UserError(f'--metrics: "{text}" has no valid IPv6 address in brackets', code=2) from None
    elif any(ch in host for ch in ":[]"):
        raise UserError(f'--metrics: expected HOST:PORT, an IPv6 address in brackets ("[::1]:9464"), got "{text}"',
                        code=2)
    return host or "0.0.0.0", int(port)


def serve(text: str, metrics: Metrics) -> tuple[Any, str]:
    """Start the HTTP endpoint on ``text``; (server, the URL it listens on). One-line error if it cannot."""
    host, port = parse_address(text)
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UserError(f"--metrics: cannot listen on {text}: {reason}", code=2) from None
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    return server, f"http://{shown}:{bound}/metrics"
