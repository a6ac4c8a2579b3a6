"""The screens pushed over the dashboard: inspector, route detail, alert log, help."""

from __future__ import annotations

import statistics
from dataclasses import replace
import time
from datetime import datetime, timezone

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from flowtui.core.headers import safe_text
from flowtui.core.model import Hop, ProbeResult, ProbeState
from flowtui.core.stats import percentile
from flowtui.ui.routeview import seconds

PHASES = ("connect", "tls", "ehlo", "auth", "data_accepted", "detected")


def hhmmss(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%SZ")


def bar(value: float, full: float, width: int) -> str:
    if full <= 0 or value <= 0:
        return ""
    n = value / full * width
    whole = int(n)
    frac = "▏▎▍▌▋▊▉"[min(6, int((n - whole) * 7))] if n - whole > 0.07 and whole < width else ""
    return ("█" * min(width, whole) + frac) or "▏"


class ThemedScreen(Screen):
    """A screen whose content carries theme colours: re-rendered when the theme changes."""

    def rerender(self) -> None:
        pass

    def colours(self) -> dict[str, str]:
        return self.app.colours()  # type: ignore[attr-defined]


class ProbesLoaded(Message):
    def __init__(self, results: list[ProbeResult], rollup: tuple | None = None,
                 hops: dict[str, int] | None = None) -> None:
        super().__init__()
        self.results = results
        self.rollup = rollup  # (Agg, Split, {bucket start: Agg}) when the window came from roll-ups
        self.hops = hops or {}  # probe id -> hop count, for the newest probes listed


# --------------------------------------------------------------------------- inspector


def path_signature(h: Hop) -> tuple[str | None, str | None]:
    return (h.from_host, h.by_host)


def hop_stats(results: list[ProbeResult]) -> list[dict[str, object]]:
    """mtr-like rows: per hop (index, by host) over the probes: last/avg/best/worst/stdev/p95, seen %."""
    with_path = [r for r in results if r.hops]
    rows: dict[tuple[int, str | None], dict[str, object]] = {}
    for r in with_path:  # oldest first: 'last' ends at the newest
        for h in r.hops:
            key = (h.index, h.by_host)
            row = rows.setdefault(key, {"index": h.index, "by": h.by_host, "delays": [], "seen": 0, "last": None})
            row["seen"] = int(row["seen"]) + 1  # type: ignore[call-overload]
            if h.delay_s is not None:
                row["delays"].append(h.delay_s)  # type: ignore[union-attr]
                row["last"] = h.delay_s
    out = []
    for key in sorted(rows, key=lambda k: (k[0], str(k[1]))):
        row = rows[key]
        d: list[float] = row["delays"]  # type: ignore[assignment]
        out.append({
            "index": row["index"], "by": row["by"], "last": row["last"],
            "avg": statistics.fmean(d) if d else None, "best": min(d) if d else None,
            "worst": max(d) if d else None, "stdev": statistics.pstdev(d) if len(d) > 1 else (0.0 if d else None),
            "p95": percentile(d, 95), "seen_pct": 100.0 * int(row["seen"]) / len(with_path),  # type: ignore[call-overload]
        })
    return out


class InspectorScreen(ThemedScreen):
    """Hop-by-hop view of one probe (the route's newest delivered one by default)."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "raw", "Raw headers"),
        Binding("left_square_bracket", "older", "Older"),
        Binding("right_square_bracket", "newer", "Newer"),
    ]

    def __init__(self, route: str, probe_id: str | None = None) -> None:
        super().__init__()
        self.route = route
        self.probe_id = probe_id
        self.results: list[ProbeResult] = []
        self.current: ProbeResult | None = None
        self.loaded = False
        self.show_raw = False

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="inspector"):
            yield Static(id="probe-title", classes="title")
            yield DataTable(id="hops", cursor_type="row", show_cursor=False)
            yield Static(id="auth")
            yield Static(id="raw")
            yield Static(id="waterfall")
            yield Static("path over the window (mtr)", classes="subtitle")
            yield DataTable(id="mtr", cursor_type="none", show_cursor=False)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        hops = self.query_one("#hops", DataTable)
        for key, label in (("n", "#"), ("path", "from → by"), ("ip", "ip"), ("with", "with"), ("tls", "tls"),
                           ("time", "time"), ("delay", "delay"), ("bar", "")):
            hops.add_column(label, key=key)
        mtr = self.query_one("#mtr", DataTable)
        for key in ("hop", "last", "avg", "best", "worst", "stdev", "p95", "seen"):
            mtr.add_column(key, key=key)
        self.query_one("#raw", Static).display = False
        self.query_one("#probe-title", Static).update(f"[b]{safe_text(self.route)}[/b]  loading…")
        self._load()

    @work(thread=True, group="store", exit_on_error=False, description="read probes with hops")
    def _load(self) -> None:
        store = self.app.store  # type: ignore[attr-defined]
        results = store.last_probes(self.route, 60, with_hops=True)
        if self.probe_id is not None and all(r.probe_id != self.probe_id for r in results):
            one = store.probe(self.probe_id)
            if one is not None:
                results = [one]
        self.post_message(ProbesLoaded(results))

    def on_probes_loaded(self, message: ProbesLoaded) -> None:
        self.results = message.results
        pick = None
        if self.probe_id is not None:
            pick = next((r for r in self.results if r.probe_id == self.probe_id), None)
        if pick is None:
            with_hops = [r for r in self.results if r.hops]
            pick = with_hops[-1] if with_hops else (self.results[-1] if self.results else None)
        self.current = pick
        self.loaded = True
        self.rerender()

    def probe_changed(self, result: ProbeResult) -> None:
        """A probe of this route reached a new state: show it if it is the one on screen
        (a pending probe turning lost, then late, changes in place)."""
        if not self.loaded or result.route != self.route:
            return
        for i, r in enumerate(self.results):
            if r.probe_id == result.probe_id:
                self.results[i] = result if result.hops or not r.hops else replace(result, hops=r.hops)
                if self.current is not None and self.current.probe_id == result.probe_id:
                    self.current = self.results[i]
                    self.rerender()
                return

    def previous_of(self, r: ProbeResult) -> ProbeResult | None:
        older = [x for x in self.results if x.hops and (x.sent_at, x.seq) < (r.sent_at, r.seq)]
        return older[-1] if older else None

    def _step(self, direction: int) -> None:
        if self.current is None:
            return
        ids = [r.probe_id for r in self.results]
        i = ids.index(self.current.probe_id) + direction
        if 0 <= i < len(ids):
            self.current = self.results[i]
            self.rerender()

    def action_older(self) -> None:
        self._step(-1)

    def action_newer(self) -> None:
        self._step(1)

    def action_raw(self) -> None:
        self.show_raw = not self.show_raw
        self.rerender()

    def rerender(self) -> None:
        if not self.loaded:
            return
        c = self.colours()
        r = self.current
        title = self.query_one("#probe-title", Static)
        hops = self.query_one("#hops", DataTable)
        hops.clear()
        if r is None:
            title.update(f"[b]{safe_text(self.route)}[/b]  no probes stored yet")
            self.query_one("#auth", Static).update("")
            self.query_one("#waterfall", Static).update("")
            return
        title.update(
            f"[b]{safe_text(self.route)}[/b]  probe #{r.seq}  [b]{r.state.value}[/b]  sent {hhmmss(r.sent_at)}  "
            f"total {seconds(r.total_s)} = submit {seconds(r.submit_s)} + transit {seconds(r.transit_s)}"
        )
        prev = self.previous_of(r)
        prev_sigs = {path_signature(h) for h in prev.hops} if prev is not None else None
        delays = [h.delay_s for h in r.hops if h.delay_s is not None]
        path_total = sum(d for d in delays if d > 0) or (r.transit_s or 0.0)
        slowest = max(delays) if delays else None
        notes: list[str] = []
        narrow = self.size.width < 120

        def host(name: str | None) -> str:
            name = name or "?"
            return name.split(".")[0] if narrow and not name.startswith("[") else name

        for h in r.hops:
            changed = prev_sigs is not None and path_signature(h) not in prev_sigs
            mark = "+" if changed else " "
            is_slow = slowest is not None and slowest > 0 and h.delay_s == slowest and len(r.hops) > 1
            delay = seconds(h.delay_s) if h.delay_s is None or h.delay_s >= 0 else f"{h.delay_s:.0f}s skew!"
            if h.delay_s is not None and h.delay_s < 0:
                notes.append(f"hop {h.index}: negative delay {h.delay_s:.0f}s (clock skew)")
            if changed:
                notes.append(f"hop {h.index} differs from the previous probe's path")
            bar_text = bar(h.delay_s or 0.0, path_total, 8 if narrow else 16)
            if is_slow and c.get("slow"):
                delay = f"[b {c['slow']}]{delay}[/]"
                bar_text = f"[{c['slow']}]{bar_text}[/]"
            tls = {True: "yes", False: "no", None: "?"}[h.tls]
            hops.add_row(
                f"{mark}{h.index}",
                f"{safe_text(host(h.from_host))} → {safe_text(host(h.by_host))}",
                safe_text(h.from_ip or "-"), safe_text(h.with_protocol or "-"), tls,
                h.timestamp.strftime("%H:%M:%S") if h.timestamp else "-", delay, bar_text, key=str(h.index),
            )
        if prev is not None and len(prev.hops) != len(r.hops):
            notes.append(f"{len(r.hops)} hops now, {len(prev.hops)} in the previous probe")
        if not r.hops:
            notes.append("no hops: " + (f"{r.state.value}" + (f" ({safe_text(r.error)})" if r.error else "")))
        a = r.auth
        def res(m) -> str:  # noqa: ANN001
            return safe_text(m.result) if m is not None else "-"
        auth = f"SPF {res(a.spf)}  DKIM {res(a.dkim)}  DMARC {res(a.dmarc)}" if a else "SPF -  DKIM -  DMARC -"
        self.query_one("#auth", Static).update(auth + "".join(f"\n[b]![/b] {n}" for n in notes))
        raw = self.query_one("#raw", Static)
        raw.display = self.show_raw
        if self.show_raw:
            raw.update("\n".join(f"Received: {safe_text(h.raw)}" for h in reversed(r.hops)) or "(no headers stored)")
        self.query_one("#waterfall", Static).update(self._waterfall(r, c))
        mtr = self.query_one("#mtr", DataTable)
        mtr.clear()
        for row in hop_stats(self.results):
            mtr.add_row(
                f"{row['index']} {safe_text(row['by'] or '?')}", seconds(row["last"]), seconds(row["avg"]),  # type: ignore[arg-type]
                seconds(row["best"]), seconds(row["worst"]), seconds(row["stdev"]), seconds(row["p95"]),  # type: ignore[arg-type]
                f"{row['seen_pct']:.0f}%",
            )

    @staticmethod
    def _waterfall(r: ProbeResult, c: dict[str, str]) -> str:
        if not r.phases:
            return "phases: -"
        end = max(t for _, t in r.phases) or 1.0
        width = 30
        lines = ["[b]phases[/b]  each phase's own time, and when it ended after the connect began"]
        prev = 0.0
        for name, t in r.phases:
            start = int(prev / end * width)
            length = max(1, int((t - prev) / end * width))
            colour = c.get("transit" if name == "detected" else "submit", "")
            blocks = "█" * length
            blocks = f"[{colour}]{blocks}[/]" if colour else blocks
            lines.append(f"{safe_text(name):<14}{' ' * start}{blocks} +{(t - prev) * 1000:.0f} ms "
                         f"[dim](at {t * 1000:.0f} ms)[/dim]")
            prev = t
        return "\n".join(lines)


# --------------------------------------------------------------------------- route detail

WINDOWS = (("15m", 900.0), ("1h", 3600.0), ("24h", 86400.0), ("7d", 7 * 86400.0), ("30d", 30 * 86400.0),
           ("1y", 365 * 86400.0))


def chart(results: list[ProbeResult], since: float, until: float, width: int, height: int,
          c: dict[str, str]) -> list[str]:
    """A stacked bar chart of submit (bottom) and transit (top) per time bin, as markup lines."""
    bins: list[list[ProbeResult]] = [[] for _ in range(width)]
    span = max(until - since, 1.0)
    for r in results:
        i = int((r.sent_at - since) / span * width)
        if 0 <= i < width:
            bins[i].append(r)
    cols: list[tuple[float, float, bool]] = []
    for b in bins:
        ok = [r for r in b if r.total_s is not None and r.state in (ProbeState.DELIVERED, ProbeState.LATE)]
        lost = any(r.state not in (ProbeState.DELIVERED, ProbeState.LATE, ProbeState.PENDING) for r in b)
        worst = max(ok, key=lambda r: r.total_s or 0.0, default=None)  # a monitor shows the slowest, not a mean
        cols.append((worst.submit_s or 0.0, worst.total_s or 0.0) + (lost,) if worst else (0.0, 0.0, lost))
    return draw_columns(cols, width, height, c, since, until)


def rollup_chart(trend: dict, since: float, until: float, width: int, height: int, c: dict[str, str]) -> list[str]:
    """The same chart from roll-up buckets ({start: Agg}): mean submit and total per column."""
    span = max(until - since, 1.0)
    acc: list[list[float]] = [[0.0, 0.0, 0.0, 0.0, 0.0] for _ in range(width)]  # sub sum, n, tot sum, n, failed
    for start, agg in trend.items():
        i = int((start - since) / span * width)
        if 0 <= i < width:
            a = acc[i]
            a[0] += agg.hists["submit"].total
            a[1] += agg.hists["submit"].n
            a[2] += agg.hists["total"].total
            a[3] += agg.hists["total"].n
            a[4] += sum(agg.counts[k] for k in ("lost", "bounced", "junk", "send_failed", "corrupted"))
    cols = [(a[0] / a[1] if a[1] and a[3] else 0.0, a[2] / a[3] if a[3] else 0.0, a[4] > 0) for a in acc]
    return draw_columns(cols, width, height, c, since, until)


def draw_columns(cols: list[tuple[float, float, bool]], width: int, height: int, c: dict[str, str],
                 since: float, until: float) -> list[str]:
    ceiling = max([t for _, t, _ in cols] + [0.001])
    lines = []
    for y in range(height, 0, -1):
        level = ceiling * (y - 0.5) / height
        cells = []
        for sub, tot, lost in cols:
            if tot >= level:
                colour = c.get("submit" if sub >= level else "transit", "")
                cells.append(f"[{colour}]█[/]" if colour else "█")
            elif y == 1 and lost:
                cells.append(f"[{c.get('crit', '')}]✕[/]" if c.get("crit") else "✕")
            else:
                cells.append(" ")
        label = f"{seconds(ceiling):>6}" if y == height else " " * 6
        lines.append(f"{label}│{''.join(cells)}")
    lines.append(" " * 6 + "└" + "─" * width)
    left, right = time_label(since, until - since), time_label(until, until - since)  # the time axis (UTC)
    lines.append(" " * 7 + left + " " * max(1, width - len(left) - len(right)) + right)
    return lines


def time_label(epoch: float, span: float) -> str:
    fmt = "%H:%M" if span <= 86400 else "%m-%d %H:%M" if span <= 8 * 86400 else "%Y-%m-%d"
    return time.strftime(fmt, time.gmtime(epoch)) + ("Z" if span <= 8 * 86400 else "")


class DetailScreen(ThemedScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("1", "window(0)", "15m"),
        Binding("2", "window(1)", "1h"),
        Binding("3", "window(2)", "24h"),
        Binding("4", "window(3)", "7d"),
        Binding("5", "window(4)", "30d"),
        Binding("6", "window(5)", "1y"),
        Binding("enter", "inspect", "Inspect", show=False),
    ]

    def __init__(self, route: str, window: int = 1) -> None:
        super().__init__()
        self.route = route
        self.window = window
        self.results: list[ProbeResult] = []
        self.rollup: tuple | None = None
        self.hops: dict[str, int] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail-title", classes="title")
            yield Static(id="chart")
            yield Static(id="percentiles")
            yield DataTable(id="recent", cursor_type="row")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        t = self.query_one("#recent", DataTable)
        for key in ("seq", "sent", "state", "submit", "transit", "total", "hops"):
            t.add_column(key, key=key)
        self._load()

    @work(thread=True, group="store", exit_on_error=False, description="read route history", exclusive=True)
    def _load(self) -> None:
        now = self.app.clock()  # type: ignore[attr-defined]
        span = WINDOWS[self.window][1]
        store = self.app.store  # type: ignore[attr-defined]
        retention = self.app.config.monitor.retention_s  # type: ignore[attr-defined]
        if span > retention:  # longer than the raw rows are kept: from the roll-ups (a thread: never the loop)
            from flowtui.core.rollup import DAY, HOUR, trend_aggs, window_agg

            def read(conn):
                agg, split = window_agg(conn, self.route, now - span, now, now, retention)
                return agg, split, trend_aggs(conn, self.route, split, HOUR if span <= 14 * DAY else DAY, now)

            rollup = store.read(read)
            newest = store.last_probes(self.route, 50, with_hops=True)
            self.post_message(ProbesLoaded(newest, rollup=rollup, hops={r.probe_id: len(r.hops) for r in newest}))
            return
        results = store.last_probes(self.route, 20_000)
        newest = store.last_probes(self.route, 50, with_hops=True)
        self.post_message(ProbesLoaded([r for r in results if r.sent_at >= now - span],
                                       hops={r.probe_id: len(r.hops) for r in newest}))

    def on_probes_loaded(self, message: ProbesLoaded) -> None:
        self.results = message.results
        self.rollup = message.rollup
        self.hops = message.hops
        self.loaded = True
        self.rerender()

    def action_window(self, i: int) -> None:
        self.window = i
        self._load()

    def action_inspect(self) -> None:
        t = self.query_one("#recent", DataTable)
        if t.row_count:
            key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
            self.app.action_inspect(self.route, key)  # type: ignore[attr-defined]

    def rerender(self) -> None:
        if not self.loaded:
            return
        from flowtui.core.stats import WindowStats

        c = self.colours()
        now = self.app.clock()  # type: ignore[attr-defined]
        name, span = WINDOWS[self.window]
        windows = "  ".join(f"[b]\\[{n}][/b]" if i == self.window else f"{i + 1}:{n}" for i, (n, _) in enumerate(WINDOWS))
        self.query_one("#detail-title", Static).update(f"[b]{safe_text(self.route)}[/b]  window {windows}")
        # the label (6) and axis (1), the chart's padding (2) and the scroll bar (2); taller on a big screen
        width = max(10, self.size.width - 12)
        height = max(4, min(24, (self.size.height - 12) // 2))
        key = f"[{c.get('submit', '')}]█[/] submit  [{c.get('transit', '')}]█[/] transit  ✕ failed"
        if self.rollup is not None:
            self._rerender_rollup(now, span, width, height, key, c)
            return
        self.query_one("#chart", Static).update(
            "\n".join(chart(self.results, now - span, now, width, height, c)) + "\n" + key + "  (bars: slowest probe)")
        st = WindowStats.from_results(self.results)
        subs = [r.submit_s for r in self.results if r.submit_s is not None]
        trans = [r.transit_s for r in self.results if r.transit_s is not None]
        self.query_one("#percentiles", Static).update(
            f"{st.count} probes, {st.delivered} delivered, {st.failed} failed, loss "
            f"{'-' if st.loss_pct is None else f'{st.loss_pct:.0f}%'}   total p50 {seconds(st.p50)} p95 "
            f"{seconds(st.p95)} p99 {seconds(st.p99)}   submit p50 {seconds(percentile(subs, 50))}  "
            f"transit p50 {seconds(percentile(trans, 50))}"
        )
        self._fill_recent()


    def _fill_recent(self) -> None:
        """The newest 50 probes, newest first, with their hop counts."""
        t = self.query_one("#recent", DataTable)
        t.clear()
        for r in reversed(self.results[-50:]):
            t.add_row(str(r.seq), hhmmss(r.sent_at), r.state.value, seconds(r.submit_s), seconds(r.transit_s),
                      seconds(r.total_s), str(self.hops[r.probe_id]) if self.hops.get(r.probe_id) else "-", key=r.probe_id)

    def _rerender_rollup(self, now: float, span: float, width: int, height: int, key: str, c: dict[str, str]) -> None:
        agg, split, trend = self.rollup  # type: ignore[misc]
        lines = rollup_chart(trend, now - span, now, width, height, c)
        self.query_one("#chart", Static).update("\n".join(lines) + "\n" + key + f"  (from roll-ups: {split.source})")
        n = agg.counts
        decided = n["count"] - n["pending"]
        loss = f"{100 * n['lost'] / decided:.1f}%" if decided else "-"
        failed = sum(n[k] for k in ("lost", "bounced", "junk", "send_failed", "corrupted"))
        approx = "" if agg.exact else " (±1%)"
        self.query_one("#percentiles", Static).update(
            f"{n['count']} probes, {n['delivered']} delivered, {failed} failed, loss {loss}   total p50 "
            f"{seconds(agg.pct('total', 50))} p95 {seconds(agg.pct('total', 95))} p99 {seconds(agg.pct('total', 99))}"
            f"{approx}   submit p50 {seconds(agg.pct('submit', 50))}  transit p50 {seconds(agg.pct('transit', 50))}"
        )
        self._fill_recent()


# --------------------------------------------------------------------------- alert log

SEVERITIES = ("all", "crit", "warn")


class AlertLogScreen(ThemedScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("a", "ack", "Acknowledge"),
        Binding("s", "severity", "Severity"),
        Binding("slash", "filter", "Route filter"),
        Binding("enter", "inspect", "Inspect", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.severity = "all"
        self.route_filter = ""

    def compose(self) -> ComposeResult:
        yield Static(id="alert-title", classes="title")
        yield DataTable(id="alerts", cursor_type="row")
        f = Input(placeholder="route filter", id="alert-filter")
        f.cursor_blink = False
        yield f
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        t = self.query_one("#alerts", DataTable)
        for key in ("time", "sev", "route", "kind", "message", "ack"):
            t.add_column(key, key=key)
        self.query_one("#alert-filter", Input).display = False
        self.refresh_alerts()

    def on_screen_resume(self) -> None:
        self.refresh_alerts()

    def rerender(self) -> None:
        self.refresh_alerts()

    def shown(self) -> list:
        app = self.app
        out = []
        for a in sorted(app.alerts.values(), key=lambda a: a.at, reverse=True):  # type: ignore[attr-defined]
            if self.severity != "all" and a.severity != self.severity:
                continue
            if self.route_filter and self.route_filter not in a.route.lower():
                continue
            out.append(a)
        return out

    def refresh_alerts(self) -> None:
        c = self.colours()
        t = self.query_one("#alerts", DataTable)
        keep = None
        if t.row_count:
            try:
                keep = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
            except Exception:
                keep = None
        t.clear()
        acked = self.app.acked  # type: ignore[attr-defined]
        rows = self.shown()
        for a in rows:
            colour = c.get(a.severity, "")
            t.add_row(hhmmss(a.at), f"[{colour}]{a.severity}[/]" if colour else a.severity, safe_text(a.route),
                      safe_text(a.kind), safe_text(a.message), "✓" if a.key in acked else "", key=a.key)
        if keep is not None and keep in t.rows:
            t.move_cursor(row=t.get_row_index(keep))
        unacked = sum(1 for a in rows if a.key not in acked)
        self.query_one("#alert-title", Static).update(
            f"[b]alert log[/b]  {len(rows)} shown, {unacked} unacknowledged   severity {self.severity}"
            + (f"   route '{safe_text(self.route_filter)}'" if self.route_filter else "")
            + "   [dim](alert rules and failed probes)[/dim]"
        )

    def action_ack(self) -> None:
        t = self.query_one("#alerts", DataTable)
        if not t.row_count:
            return
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        self.app.acknowledge(key)  # type: ignore[attr-defined]
        self.refresh_alerts()

    def action_severity(self) -> None:
        self.severity = SEVERITIES[(SEVERITIES.index(self.severity) + 1) % len(SEVERITIES)]
        self.refresh_alerts()

    def action_filter(self) -> None:
        f = self.query_one("#alert-filter", Input)
        f.display = True
        f.focus()

    @on(Input.Changed, "#alert-filter")
    def _changed(self, event: Input.Changed) -> None:
        self.route_filter = event.value.strip().lower()
        self.refresh_alerts()

    @on(Input.Submitted, "#alert-filter")
    def _submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.display = False
        self.query_one("#alerts", DataTable).focus()

    def action_inspect(self) -> None:
        t = self.query_one("#alerts", DataTable)
        if t.row_count:
            key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
            a = self.app.alerts.get(key)  # type: ignore[attr-defined]
            if a is not None:
                self.app.action_inspect(a.route, a.probe_id)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- help

HELP = """[b]flowtui keys[/b]

[b]dashboard[/b]
  ↑ ↓        select a route
  enter      inspect the latest probe (hop by hop)
  d          route detail: history, percentiles, recent probes
  a          alert log
  p          probe the selected route now
  space      pause / resume the selected route
  /          filter routes (esc clears)
  s          sort: health, name, p95, loss
  m          DMARC reports: pass share, top / new / failing sources

[b]inspector[/b]   [ ]  older / newer probe    r  raw headers
[b]detail[/b]      1-6  window 15m 1h 24h 7d 30d 1y   enter  inspect probe
[b]alert log[/b]   a  acknowledge   s  severity   /  route filter
[b]DMARC[/b]       1 2 3  top / new / failing   [ ]  domain   w  window

[b]anywhere[/b]    t  theme   ?  this help   ctrl+p  commands
            esc  back      q  quit (stops the engine, saves all)
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Close"), Binding("question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")


__all__ = ["AlertLogScreen", "DetailScreen", "HelpScreen", "InspectorScreen", "ThemedScreen", "hop_stats"]
