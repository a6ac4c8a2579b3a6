"""What the dashboard shows of one route, folded from probe results (no Textual here).

The UI keeps one ``RouteState`` per route: the newest results by probe id
(a probe can complete more than once: pending, then delivered or lost, then
late). Rows, health and alert entries are computed from these immutable
results on the UI tick, never from objects shared with the engine.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from flowtui.core.headers import safe_text
from flowtui.core.model import ProbeResult, ProbeState, Route
from flowtui.core.stats import WindowStats, spark_cells

HISTORY = 120  # results kept per route in memory (sparkline + window stats)
WINDOW_S = 3600.0  # the dashboard's stats window
# Probe outcomes the alert log lists until real alert rules exist.
ALERT_STATES = {
    ProbeState.LOST: "crit",
    ProbeState.SEND_FAILED: "crit",
    ProbeState.BOUNCED: "crit",
    ProbeState.CORRUPTED: "crit",
    ProbeState.JUNK: "warn",
    ProbeState.LATE: "warn",
}
SHORT_STATE = {ProbeState.SEND_FAILED: "nosend", ProbeState.CORRUPTED: "corrupt", ProbeState.PENDING: "pending"}
HEALTH_ORDER = {"crit": 0, "warn": 1, "no data": 2, "paused": 3, "ok": 4}


@dataclass
class RouteState:
    route: Route
    results: OrderedDict[str, ProbeResult] = field(default_factory=OrderedDict)
    paused: bool = False
    # window figures are computed once per route per second (or per change), not per tick
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def fold(self, result: ProbeResult) -> None:
        self._memo.clear()
        self.results[result.probe_id] = result
        self.results.move_to_end(result.probe_id)
        while len(self.results) > HISTORY:
            self.results.popitem(last=False)

    def ordered(self) -> list[ProbeResult]:
        return sorted(self.results.values(), key=lambda r: (r.sent_at, r.seq))

    def decided(self) -> list[ProbeResult]:
        return [r for r in self.ordered() if r.state is not ProbeState.PENDING]

    def stats(self, now: float, window_s: float = WINDOW_S) -> WindowStats:
        key = ("stats", int(now), window_s)
        if key not in self._memo:
            if len(self._memo) > 8:
                self._memo.clear()
            self._memo[key] = WindowStats.from_results(r for r in self.results.values() if r.sent_at >= now - window_s)
        return self._memo[key]

    def last_delivery(self) -> ProbeResult | None:
        arrived = [r for r in self.results.values() if r.detected_at is not None]
        return max(arrived, key=lambda r: r.detected_at) if arrived else None  # type: ignore[arg-type,return-value]

    def health(self, now: float, window_s: float = WINDOW_S) -> str:
        if self.paused:
            return "paused"
        key = ("health", int(now), window_s)
        if key not in self._memo:
            self._memo[key] = self._health(now, window_s)
        return self._memo[key]

    def _health(self, now: float, window_s: float) -> str:
        waited = [now - r.sent_at for r in self.results.values()
                  if r.state is ProbeState.PENDING and r.submit_s is not None]
        oldest_wait = max(waited, default=0.0)  # mail stuck on its way is as slow as its wait
        if oldest_wait >= self.route.crit_s:
            return "crit"
        decided = self.decided()
        if not decided:
            return "warn" if oldest_wait >= self.route.warn_s else "no data"
        last = decided[-1]
        stats = self.stats(now, window_s)
        if last.state in ALERT_STATES and ALERT_STATES[last.state] == "crit":
            return "crit"
        if last.total_s is not None and last.total_s >= self.route.crit_s:
            return "crit"
        if (stats.loss_ratio or 0) > 0.5:
            return "crit"
        if last.state in ALERT_STATES or (stats.failed > 0):
            return "warn"
        if (last.total_s or 0) >= self.route.warn_s or (stats.p95 or 0) >= self.route.warn_s:
            return "warn"
        if oldest_wait >= self.route.warn_s:
            return "warn"
        return "ok"

    def spark_values(self) -> list[float | None]:
        """Round trips of decided probes, oldest first; None marks a failed probe."""
        out: list[float | None] = []
        for r in self.decided():
            out.append(r.total_s if r.state in (ProbeState.DELIVERED, ProbeState.LATE) else None)
        return out


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    if value < 100:
        return f"{value:.1f}s"
    return age(value)


def age(value: float | None) -> str:
    if value is None:
        return "-"
    value = max(0.0, value)
    if value < 60:
        return f"{value:.0f}s"
    if value < 3600:
        return f"{value // 60:.0f}m"
    if value < 86400:
        return f"{value // 3600:.0f}h"
    return f"{value // 86400:.0f}d"


HEALTH_GLYPH = {"ok": "●", "warn": "▲", "crit": "✖", "paused": "‖", "no data": "○"}


def row_cells(state: RouteState, now: float, ceiling: float, spark_width: int, colours: dict[str, str]) -> dict[str, str]:
    """The dashboard row of one route: column key -> Rich markup (data escaped)."""
    health = state.health(now)
    stats = state.stats(now)
    decided = state.decided()
    last = decided[-1] if decided else None
    last_delivered = state.last_delivery()
    colour = colours.get(health, "")
    tag = f"[{colour}]" if colour else "["
    health_cell = f"{tag}{HEALTH_GLYPH[health]} {health}[/]" if colour else f"{HEALTH_GLYPH[health]} {health}"
    if last is None:
        last_cell = "-"
    elif last.state in (ProbeState.DELIVERED, ProbeState.LATE):
        last_cell = seconds(last.total_s)
    else:
        last_cell = SHORT_STATE.get(last.state, last.state.value)
    loss = stats.loss_pct
    spark = spark_cells(state.spark_values(), ceiling, spark_width) if spark_width > 0 else ""
    lost_colour = colours.get("crit", "")
    if lost_colour and "✕" in spark:
        spark = spark.replace("✕", f"[{lost_colour}]✕[/]")
    hops = len(last_delivered.hops) if last_delivered is not None and last_delivered.hops else None
    return {
        "health": health_cell,
        "route": safe_text(state.route.name),
        "last": last_cell,
        "p50": seconds(stats.p50),
        "p95": seconds(stats.p95),
        "loss": "-" if loss is None else f"{loss:.0f}%",
        "hops": "-" if hops is None else str(hops),
        "age": "-" if last_delivered is None else age(now - (last_delivered.detected_at or now)),
        "spark": spark,
    }


@dataclass(frozen=True, slots=True)
class AlertEntry:
    """A line of the alert log: a probe that failed, or an alert rule firing or resolving."""

    key: str
    at: float
    route: str
    severity: str
    kind: str
    message: str
    probe_id: str
    alert_id: str = ""  # a firing rule alert's id: acknowledging it is stored and stops its notifications


def rule_alert_entry(alert, resolved: bool) -> AlertEntry:
    """A line of the alert log for an alert rule's firing or resolution (an AlertRecord)."""
    when = alert.resolved_at if resolved and alert.resolved_at else alert.fired_at
    return AlertEntry(
        key=f"rule:{alert.id}:{'resolved' if resolved else 'fired'}", at=when, route=alert.route or "-",
        severity="info" if resolved else alert.severity, kind=f"{alert.rule} {'resolved' if resolved else 'fired'}",
        message=alert.message, probe_id="", alert_id="" if resolved else alert.id,
    )


def _failed_at(r: ProbeResult, timeout_s: float | None) -> float:
    if r.detected_at is not None:
        return r.detected_at
    if r.state is ProbeState.LOST and timeout_s is not None:
        return r.sent_at + timeout_s
    if r.state is ProbeState.SEND_FAILED and r.submit_s is not None:
        return r.sent_at + r.submit_s
    return r.sent_at


def alert_for(result: ProbeResult, timeout_s: float | None = None) -> AlertEntry | None:
    """A failed probe's line in the alert log, stamped when it failed (a lost probe: when
    its timeout ran out, not when it was sent)."""
    severity = ALERT_STATES.get(result.state)
    if severity is None:
        return None
    r = result
    if r.state is ProbeState.SEND_FAILED:
        msg = f"send failed at {r.error_phase or '?'}: {r.error or ''}"
    elif r.state is ProbeState.LOST:
        msg = f"probe #{r.seq} not seen within the timeout"
    elif r.state is ProbeState.LATE:
        msg = f"probe #{r.seq} arrived late after {seconds(r.total_s)}"
    elif r.state is ProbeState.JUNK:
        msg = f"probe #{r.seq} landed in {r.folder or 'junk'}"
    elif r.state is ProbeState.BOUNCED:
        msg = f"probe #{r.seq} bounced: {(r.bounce.diagnostic or r.bounce.status or '') if r.bounce else ''}"
    else:
        msg = f"probe #{r.seq} content does not match what was sent"
    return AlertEntry(
        key=f"{r.probe_id}:{r.state.value}", at=_failed_at(r, timeout_s), route=r.route,
        severity=severity, kind=r.state.value, message=msg.strip(), probe_id=r.probe_id,
    )
