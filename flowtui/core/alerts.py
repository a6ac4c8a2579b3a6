"""The alert rule state machine (pure: no I/O, no clock, no asyncio).

``AlertBook`` is fed probe results (``observe``), DNS check outcomes
(``observe_dns``) and the time (``tick``) and answers with ``Transition``s:
an alert *fired* (once, when its condition starts), *escalated* (a firing
latency alert crossed crit), or *resolved* (its condition has been clear for
``rule.clear`` probes in a row). Each alert is keyed by rule and subject (a
route, or a DNS record and its problem); while one is firing another never
fires for the same key. ``restore`` takes the firing alerts from the store
so a restarted monitor does not fire them again.

The caller (``flowtui.core.alerting``) stores the records, publishes events
and runs the notifiers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from flowtui.core.model import DMARC_ALERT_KINDS, FAILED, AlertRule, ProbeResult, ProbeState, Route
from flowtui.core.storage import AlertRecord

HISTORY = 200  # probes kept per route

DEFAULT_SEVERITY = {
    "lost": "crit", "send_failed": "crit", "bounced": "crit", "corrupted": "crit", "failures": "crit",
    "junk": "warn", "loss_ratio": "warn", "auth": "warn", "tls": "warn", "path": "warn",
    "hop_count": "warn", "dns": "warn", "latency": "warn",
    "dmarc_pass_rate": "warn", "dmarc_new_source": "warn", "dmarc_failing": "warn",
}
_NOT_PER_ROUTE = frozenset(("dns", *DMARC_ALERT_KINDS))
_STATE_KINDS = {
    "lost": ProbeState.LOST, "send_failed": ProbeState.SEND_FAILED, "bounced": ProbeState.BOUNCED,
    "junk": ProbeState.JUNK, "corrupted": ProbeState.CORRUPTED,
}
_ARRIVED = frozenset({ProbeState.DELIVERED, ProbeState.LATE, ProbeState.JUNK, ProbeState.CORRUPTED})
_RANK = {"info": 0, "warn": 1, "crit": 2}


MAILBOX_GRACE_S = 60.0  # a mailbox not connected this long is an alert (a brief drop is not)
MAILBOX_RULE = AlertRule(name="mailbox", kind="mailbox", severity="crit")  # built in, always on


def default_rules() -> tuple[AlertRule, ...]:
    """What a config without any alert rule gets: lost, send_failed and latency."""
    return (
        AlertRule(name="lost", kind="lost"),
        AlertRule(name="send_failed", kind="send_failed"),
        AlertRule(name="latency", kind="latency"),
    )


@dataclass(frozen=True, slots=True)
class DnsObservation:
    """One check of one record of one domain (kind: MX, SPF, DMARC, MTA-STS, TLSRPT).

    ``value`` is the normalised record text (None: no such record);
    ``error`` is set when the resolver could not answer (timeout, refused);
    ``invalid`` when the record exists but does not parse; ``lookups`` is the
    number of DNS look-ups an SPF record needs.
    """

    domain: str
    kind: str
    value: str | None = None
    error: str | None = None
    invalid: str | None = None
    lookups: int | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    kind: str  # "fired", "escalated", "resolved"
    alert: AlertRecord


@dataclass(slots=True)
class _Firing:
    record: AlertRecord
    ok_streak: int = 0


@dataclass(slots=True)
class _PathState:
    baseline: tuple[str, ...] | None = None
    candidate: tuple[str, ...] | None = None
    streak: int = 0


@dataclass(slots=True)
class _DnsState:
    value: str | None = None  # the last record seen (kept while it is missing)
    seen: bool = False


def alert_key(alert_id: str) -> str:
    """The key (rule|subject) an alert id was made from."""
    return alert_id.rsplit("|", 1)[0]


@dataclass
class AlertBook:
    rules: tuple[AlertRule, ...]
    routes: dict[str, Route]
    firing: dict[str, _Firing] = field(default_factory=dict)
    _probes: dict[str, dict[str, ProbeResult]] = field(default_factory=dict)
    _paths: dict[tuple[str, str], _PathState] = field(default_factory=dict)
    _dns: dict[tuple[str, str], _DnsState] = field(default_factory=dict)

    # ------------------------------------------------------------ inputs
    def restore(self, records: list[AlertRecord], probes: list[ProbeResult] = ()) -> None:
        """Firing alerts and recent probes from the store, before anything is observed."""
        for rec in records:
            if rec.state == "fired":
                self.firing[alert_key(rec.id)] = _Firing(rec)
        for r in sorted(probes, key=lambda p: p.seq):
            self._remember(r)
            if r.state in _ARRIVED:
                for rule in self._rules_for(r.route):
                    if rule.kind in ("path", "hop_count"):
                        self._path_condition(rule, r)  # learn the baseline, fire nothing

    def observe(self, result: ProbeResult, now: float) -> list[Transition]:
        """A probe reached a new state; evaluate the route's rules."""
        self._remember(result)
        decided = result.state is not ProbeState.PENDING
        return self._evaluate(result.route, now, result if decided else None)

    def tick(self, now: float) -> list[Transition]:
        """Time passed: pending probes age (latency), windows slide (loss ratio)."""
        out: list[Transition] = []
        for route in self.routes:
            out += self._evaluate(route, now, None)
        return out

    def observe_mailbox(self, mailbox: str, state: str, detail: str, since: float, now: float) -> list[Transition]:
        """A watched mailbox's connection (built in, no rule needed): a refused login fires
        at once; a connection that has not come up for MAILBOX_GRACE_S fires; being
        connected (idle or polling) resolves. Probes of its routes go lost meanwhile."""
        if state in ("idle", "polling"):
            cond = None
        elif state == "down":
            cond = ("crit", f"mailbox {mailbox}: {detail or 'login refused'}")
        elif state in ("reconnecting", "connecting") and now - since >= MAILBOX_GRACE_S:
            cond = ("crit", f"mailbox {mailbox}: not connected for {now - since:.0f}s"
                            + (f": {detail}" if detail else ""))
        else:
            return []
        return self._step(f"mailbox|{mailbox}", MAILBOX_RULE, None, cond, now, counted=True, clear=1)

    def restore_dns(self, values: dict[tuple[str, str], str]) -> None:
        """The last record values seen before a restart: a change while flowtui was
        down is then a change, not a first sight."""
        for rule in self.rules:
            if rule.kind == "dns":
                for (domain, kind), value in values.items():
                    st = self._dns.setdefault((rule.name, f"{domain}/{kind}"), _DnsState())
                    if st.value is None:
                        st.value, st.seen = value, True

    def observe_dns(self, obs: DnsObservation, now: float) -> list[Transition]:
        out: list[Transition] = []
        for rule in self.rules:
            if rule.kind == "dns":
                out += self._dns_rule(rule, obs, now)
        return out

    def observe_dmarc(self, rule: AlertRule, conditions: dict[str, tuple[str, str]], now: float) -> list[Transition]:
        """A DMARC rule was evaluated over the stored reports: ``conditions`` maps each
        subject (a domain, or a domain and source) whose condition holds to (severity,
        message); a firing alert of this rule whose subject is not in it resolves."""
        out: list[Transition] = []
        prefix = f"{rule.name}|"
        for key in [k for k in self.firing if k.startswith(prefix) and k[len(prefix):] not in conditions]:
            out += self._step(key, rule, None, None, now, counted=True, clear=1)
        for subject, cond in sorted(conditions.items()):
            out += self._step(prefix + subject, rule, None, cond, now, counted=True)
        return out

    def ack(self, alert_id: str, now: float) -> AlertRecord | None:
        f = self.firing.get(alert_key(alert_id))
        if f is None or f.record.id != alert_id:
            return None
        f.record = replace(f.record, acked_at=now)
        return f.record

    def ack_if_new(self, alert_id: str, acked_at: float) -> bool:
        """Take a stored acknowledgement of a firing alert not yet acknowledged here."""
        f = self.firing.get(alert_key(alert_id))
        if f is None or f.record.id != alert_id or f.record.acked_at is not None:
            return False
        f.record = replace(f.record, acked_at=acked_at)
        return True

    # ------------------------------------------------------------ machinery
    def _remember(self, r: ProbeResult) -> None:
        probes = self._probes.setdefault(r.route, {})
        probes[r.probe_id] = r
        if len(probes) > HISTORY:
            for pid, _ in sorted(probes.items(), key=lambda kv: kv[1].seq)[: len(probes) - HISTORY]:
                del probes[pid]

    def _rules_for(self, route: str) -> list[AlertRule]:
        return [r for r in self.rules if r.kind not in _NOT_PER_ROUTE and (not r.routes or route in r.routes)]

    def _history(self, route: str) -> list[ProbeResult]:
        return sorted(self._probes.get(route, {}).values(), key=lambda p: p.seq)

    def _evaluate(self, route: str, now: float, new: ProbeResult | None) -> list[Transition]:
        out: list[Transition] = []
        history = self._history(route)
        for rule in self._rules_for(route):
            if rule.kind in ("path", "hop_count"):
                if new is None or new.state not in _ARRIVED:
                    continue
                cond = self._path_condition(rule, new)
            else:
                cond = self._condition(rule, route, history, now)
            out += self._step(f"{rule.name}|{route}", rule, route, cond, now, counted=new is not None)
        return out

    def _step(self, key: str, rule: AlertRule, route: str | None, cond: tuple[str, str] | None,
              now: float, counted: bool, clear: int | None = None) -> list[Transition]:
        """Advance one alert's lifecycle: cond is (severity, message) while it holds."""
        f = self.firing.get(key)
        if cond is not None:
            severity, message = cond
            if f is None:
                rec = AlertRecord(
                    id=f"{key}|{int(now * 1000)}", route=route, rule=rule.name, severity=severity,
                    state="fired", fired_at=now, message=message,
                )
                self.firing[key] = _Firing(rec)
                return [Transition("fired", rec)]
            f.ok_streak = 0
            if _RANK[severity] > _RANK[f.record.severity]:
                f.record = replace(f.record, severity=severity, message=message)
                return [Transition("escalated", f.record)]
            return []
        if f is None:
            return []
        if counted:
            f.ok_streak += 1
        if f.ok_streak >= (rule.clear if clear is None else clear):
            del self.firing[key]
            rec = replace(f.record, state="resolved", resolved_at=now)
            return [Transition("resolved", rec)]
        return []

    # ------------------------------------------------------------ conditions
    def _condition(self, rule: AlertRule, route_name: str, history: list[ProbeResult],
                   now: float) -> tuple[str, str] | None:
        decided = [p for p in history if p.state is not ProbeState.PENDING]
        route = self.routes.get(route_name)
        kind = rule.kind
        sev = rule.severity or DEFAULT_SEVERITY[kind]
        if kind == "latency":
            return self._latency(rule, route, history, now)
        if kind in _STATE_KINDS:
            state = _STATE_KINDS[kind]
            last = decided[-rule.n:]
            hits = [p for p in last if p.state is state]
            if len(hits) >= rule.m:
                p = hits[-1]
                what = {
                    "lost": "not seen", "send_failed": f"send failed at {p.error_phase}: {p.error}",
                    "bounced": f"bounced: {(p.bounce.status or '') + ' ' + (p.bounce.diagnostic or '') if p.bounce else ''}".strip(),
                    "junk": f"delivered to junk ({p.folder})", "corrupted": "content does not match what was sent",
                }[kind]
                return sev, f"#{p.seq} {what}" + (f" ({len(hits)} of the last {len(last)})" if rule.n > 1 else "")
            return None
        if kind == "failures":
            last = decided[-rule.count:]
            if len(last) >= rule.count and all(p.state in FAILED for p in last):
                return sev, f"{rule.count} failed probes in a row ({', '.join(p.state.value for p in last)})"
            return None
        if kind == "loss_ratio":
            window = [p for p in decided if p.sent_at >= now - rule.window_s]
            if len(window) < max(rule.m, 1):
                return None
            failed = sum(1 for p in window if p.state in FAILED)
            share = failed / len(window)
            if share > rule.ratio:
                return sev, f"{failed} of {len(window)} probes failed ({share:.0%} > {rule.ratio:.0%})"
            return None
        arrived = [p for p in decided if p.state in _ARRIVED]
        if not arrived:
            return None
        p = arrived[-1]
        if kind == "auth":
            bad = []
            for method in rule.methods:
                res = getattr(p.auth, method, None) if p.auth is not None else None
                value = res.result.lower() if res is not None else "none"
                if value != "pass":
                    bad.append(f"{method}={value}")
            return (sev, f"#{p.seq} " + " ".join(bad)) if bad else None
        if kind == "tls":
            if route is None or not route.require_tls:
                return None
            plain = [h for h in p.hops if h.tls is False]
            if plain:
                hops = ", ".join(f"hop {h.index} ({h.from_host or '?'} -> {h.by_host or '?'})" for h in plain)
                return sev, f"#{p.seq} without TLS: {hops}"
            return None
        raise AssertionError(f"unknown alert kind {kind!r}")  # config.py checks kinds

    def _latency(self, rule: AlertRule, route: Route | None, history: list[ProbeResult],
                 now: float) -> tuple[str, str] | None:
        warn = rule.warn_s if rule.warn_s is not None else (route.warn_s if route else math.inf)
        crit = rule.crit_s if rule.crit_s is not None else (route.crit_s if route else math.inf)
        if rule.severity == "crit":
            warn = crit
        values: list[tuple[ProbeResult, float, bool]] = []  # probe, seconds, still waiting
        for p in history:
            if p.state is ProbeState.SEND_FAILED or p.state is ProbeState.BOUNCED:
                continue
            if p.state is ProbeState.PENDING or p.state is ProbeState.LOST:
                waited = now - p.sent_at
                if rule.metric == "transit":
                    waited -= p.submit_s or 0.0
                if p.state is ProbeState.PENDING and waited < warn:
                    continue  # still young: not known to be slow or fast yet
                values.append((p, waited, True))
                continue
            value = p.transit_s if rule.metric == "transit" else p.total_s
            if value is not None:
                values.append((p, value, False))
        last = values[-rule.n:]
        # a probe still outstanding is as slow as the flow is: the oldest one counts even
        # when newer (younger) probes were sent after it
        waiting = [v for v in values if v[2] and v[0].state is ProbeState.PENDING]
        if waiting:
            oldest = max(waiting, key=lambda v: v[1])
            if oldest not in last:
                last = (last[1:] if len(last) >= rule.n else last) + [oldest]
        over_crit = [v for v in last if v[1] >= crit]
        over_warn = [v for v in last if v[1] >= warn]
        chosen, sev = (over_crit, "crit") if len(over_crit) >= rule.m else (over_warn, "warn") if len(over_warn) >= rule.m else ([], "")
        if not chosen:
            return None
        p, value, waiting = chosen[-1]
        limit = crit if sev == "crit" else warn
        state = " and still waiting" if waiting else ""
        return sev, f"#{p.seq} {rule.metric} {value:.1f}s{state} >= {sev} {limit:g}s"

    def _path_condition(self, rule: AlertRule, p: ProbeResult) -> tuple[str, str] | None:
        st = self._paths.setdefault((rule.name, p.route), _PathState())
        if rule.kind == "path":
            current = tuple(dict.fromkeys(h.by_host for h in p.hops if h.by_host))
        else:
            current = (str(len(p.hops)),)
        if st.baseline is None:
            st.baseline = current
            return None
        if current == st.baseline:
            st.candidate, st.streak = None, 0
            return None
        if current == st.candidate:
            st.streak += 1
        else:
            st.candidate, st.streak = current, 1
        sev = rule.severity or DEFAULT_SEVERITY[rule.kind]
        if rule.kind == "path":
            new = [h for h in current if h not in st.baseline]
            gone = [h for h in st.baseline if h not in current]
            parts = ([f"new relay {', '.join(new)}"] if new else []) + ([f"gone {', '.join(gone)}"] if gone else [])
            message = f"#{p.seq} path changed: " + ("; ".join(parts) or "relays reordered")
        else:
            message = f"#{p.seq} hop count changed from {st.baseline[0]} to {current[0]}"
        if st.streak >= rule.count:  # the new path is the path now
            st.baseline, st.candidate, st.streak = current, None, 0
            return None
        return sev, message

    # ------------------------------------------------------------ DNS
    def _dns_rule(self, rule: AlertRule, obs: DnsObservation, now: float) -> list[Transition]:
        subject = f"{obs.domain}/{obs.kind}"
        st = self._dns.setdefault((rule.name, subject), _DnsState())
        sev = rule.severity or DEFAULT_SEVERITY["dns"]
        out: list[Transition] = []

        def step(problem: str, cond: tuple[str, str] | None) -> None:
            out.extend(self._step(f"{rule.name}|{subject} {problem}", rule, None, cond, now, counted=True))

        if obs.error is not None:  # the resolver did not answer: nothing is known about the record
            step("unreachable", (sev, f"{obs.kind} of {obs.domain}: no answer from the resolver: {obs.error}"))
            return out
        step("unreachable", None)
        missing = obs.value is None and st.seen
        step("missing", (sev, f"{obs.kind} record of {obs.domain} disappeared (was {st.value})") if missing else None)
        step("invalid", (sev, f"{obs.kind} record of {obs.domain} does not parse: {obs.invalid}") if obs.invalid else None)
        too_many = obs.lookups is not None and obs.lookups > 10
        step("lookups", (sev, f"SPF of {obs.domain} needs {obs.lookups} DNS look-ups (limit 10)") if too_many else None)
        changed = obs.value is not None and st.value is not None and obs.value != st.value
        if changed:
            step("changed", (sev, f"{obs.kind} record of {obs.domain} changed: {st.value!r} -> {obs.value!r}"))
        elif obs.value is not None:  # the same record again: a change has settled
            step("changed", None)
        if obs.value is not None:
            st.value, st.seen = obs.value, True
        return out
