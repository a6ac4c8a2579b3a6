"""The full-screen monitor: the engine runs as an async worker on the app's loop.

Events from the bus are drained on a UI tick (``tick_hz``), folded into one
``RouteState`` per route and a dirty set, and flushed into the one route
table inside ``batch_update()``, cell by cell where something changed.
Store reads run in thread workers; nothing here talks SMTP or IMAP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.color import Color
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import Worker, WorkerState

from flowtui.core.engine import Engine
from flowtui.core.events import (
    AlertRaised,
    AlertResolved,
    DmarcReportsImported,
    EventBus,
    ProbeCompleted,
    Subscription,
)
from flowtui.core.headers import safe_text
from flowtui.core.model import Config, ProbeResult
from flowtui.core.storage import Store
from flowtui.ui.routeview import (
    HEALTH_ORDER,
    HISTORY,
    WINDOW_S,
    AlertEntry,
    RouteState,
    alert_for,
    row_cells,
    rule_alert_entry,
)
from flowtui.ui.routetable import RouteTable
from flowtui.ui.themes import DEFAULT_THEME, THEME_DIR, VARIABLE_DEFAULTS, load_themes, user_theme_dir

COLUMNS = (
    ("health", "health"), ("route", "route"), ("last", "last"), ("p50", "p50"), ("p95", "p95"),
    ("loss", "loss"), ("hops", "hops"), ("age", "age"), ("spark", "trend"),
)
COLUMN_WIDTHS = {"health": 9, "last": 7, "p50": 5, "p95": 5, "loss": 4, "hops": 4, "age": 4}
PADDING = 2 * len(COLUMNS) + 2  # cell padding, and room for a scrollbar
SORTS = ("health", "name", "p95", "loss")


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``."""
    import math

    exp = math.floor(math.log10(value))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= value:
            return m * 10**exp
    return 10 ** (exp + 1)


HISTORY_ALERTS = 200  # rule alerts read back into the log at start


class HistoryLoaded(Message):
    """The store's recent probes per route and recent rule alerts were read (in a thread)."""

    def __init__(self, history: dict[str, list[ProbeResult]], alerts: list | None = None) -> None:
        super().__init__()
        self.history = history
        self.alerts = alerts or []


class RoutesFlushed(Message):
    """A UI tick wrote changed rows into the route table."""

    def __init__(self, routes: tuple[str, ...]) -> None:
        super().__init__()
        self.routes = routes


TALL_ROWS = 32  # a screen this tall shows the newest alerts below the routes


def hhmmss_utc(epoch: float) -> str:
    return time.strftime("%H:%M:%SZ", time.gmtime(epoch))


class DashboardScreen(Screen):
    BINDINGS = [
        Binding("enter", "inspect", "Inspect"),
        Binding("d", "detail", "Detail"),
        Binding("a", "alerts", "Alerts"),
        Binding("p", "probe", "Probe"),
        Binding("space", "pause", "Pause"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("m", "dmarc", "DMARC", show=False),  # in ? help; shown, it would change every dashboard snapshot
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        table: DataTable = RouteTable(id="routes", cursor_type="row", zebra_stripes=False)
        yield table
        yield Static(id="dash-alerts")  # the newest alert-log lines, on a tall (wall) screen only
        filt = Input(placeholder="filter routes (Enter keeps, Esc clears)", id="filter")
        filt.cursor_blink = False
        yield filt
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one("#routes", DataTable)
        route_width = self.app.route_width()  # type: ignore[attr-defined]
        for key, label in COLUMNS:  # fixed widths: a live table must not jitter as values change
            width = route_width if key == "route" else COLUMN_WIDTHS.get(key)
            table.add_column(label, key=key, width=width)
        self.query_one("#filter", Input).display = False
        self.app.sync_rows(self)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        self.app.flush(full=True)  # type: ignore[attr-defined]

    def on_resize(self) -> None:
        self.set_class(self.size.height >= TALL_ROWS, "tall")
        self.app.flush(full=True)  # type: ignore[attr-defined]
        self.refresh_recent_alerts()

    def refresh_recent_alerts(self) -> None:
        """On a tall screen, the newest alert-log lines below the routes (a NOC wall sees them)."""
        if not self.has_class("tall"):
            return
        app = self.app
        panel = self.query_one("#dash-alerts", Static)
        rows = max(1, panel.size.height - 1 if panel.size.height else (self.size.height // 3))
        entries = sorted(app.alerts.values(), key=lambda a: a.at, reverse=True)[:rows]  # type: ignore[attr-defined]
        c = app.colours()  # type: ignore[attr-defined]
        width = max(20, self.size.width - 4)
        lines = ["[b]recent alerts[/b]  (a: the whole log)"]
        for a in entries:
            colour = c.get(a.severity, "")
            sev = f"[{colour}]{a.severity:<4}[/]" if colour else f"{a.severity:<4}"
            mark = " ✓" if a.key in app.acked else ""  # type: ignore[attr-defined]
            text = f"{a.route}  {a.kind}  {a.message}"
            text = text if len(text) <= width - 20 else text[: width - 21] + "…"
            lines.append(f"{hhmmss_utc(a.at)} {sev} {safe_text(text)}{mark}")
        if not entries:
            lines.append("[dim]none yet[/dim]")
        panel.update("\n".join(lines))

    # ---- actions (most live on the app so the command palette can reach them)
    def action_inspect(self) -> None:
        self.app.action_inspect()  # type: ignore[attr-defined]

    def action_detail(self) -> None:
        self.app.action_detail()  # type: ignore[attr-defined]

    def action_alerts(self) -> None:
        self.app.action_alerts()  # type: ignore[attr-defined]

    def action_probe(self) -> None:
        self.app.action_probe()  # type: ignore[attr-defined]

    def action_dmarc(self) -> None:
        self.app.action_dmarc()  # type: ignore[attr-defined]

    def action_pause(self) -> None:
        self.app.action_pause()  # type: ignore[attr-defined]

    def action_sort(self) -> None:
        self.app.action_sort()  # type: ignore[attr-defined]

    def action_filter(self) -> None:
        filt = self.query_one("#filter", Input)
        filt.display = True
        filt.focus()

    def action_clear_filter(self) -> None:
        filt = self.query_one("#filter", Input)
        filt.value = ""
        filt.display = False
        self.query_one("#routes", DataTable).focus()

    @on(DataTable.RowSelected, "#routes")
    def _selected(self) -> None:
        self.app.action_inspect()  # type: ignore[attr-defined]

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.app.route_filter = event.value.strip().lower()  # type: ignore[attr-defined]
        self.app.sync_rows(self)  # type: ignore[attr-defined]

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.display = False
        self.query_one("#routes", DataTable).focus()


class FlowApp(App):
    """flowtui's monitor. Give it a config and a store; ``engine`` None shows the store only."""

    TITLE = "flowtui"
    CSS_PATH = "flowtui.tcss"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("t", "cycle_theme", "Theme"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        engine: Engine | None = None,
        bus: EventBus | None = None,
        alerting=None,
        theme: str | None = None,
        clock: Callable[[], float] = time.time,
        tick_hz: float = 4.0,
        schedule: bool = True,
        theme_dir: Path | None = None,
        maintainer=None,
        dmarc=None,
        dmarc_lookup=None,
    ) -> None:
        super().__init__()
        self.config = config
        self.maintainer = maintainer  # a rollup.Maintainer: roll-ups and retention, stopped in shutdown()
        self.store = store
        self.engine = engine
        self.alerting = alerting  # an AlertEngine, started by the caller; stopped in shutdown()
        self.dmarc = dmarc  # a DmarcCollector ([dmarc]): run here as a worker
        self.dmarc_lookup = dmarc_lookup  # reverse DNS for the DMARC screen (ip -> name)
        self.bus = bus if bus is not None else (engine.bus if engine is not None else None)
        self.clock = clock
        self.tick_hz = tick_hz
        self.schedule = schedule
        self.routes: dict[str, RouteState] = {r.name: RouteState(r) for r in config.routes}
        self.alerts: dict[str, AlertEntry] = {}
        self.acked: set[str] = set()
        self.dirty: set[str] = set(self.routes)
        self.route_filter = ""
        self.sort_by = "health"
        self.history_loaded = False
        self.engine_started = False
        self._rendered: dict[str, dict[str, str]] = {}
        self._shut_down = False
        self._sub: Subscription | None = None
        self._last_full = 0.0
        # built-ins, the user's folder, the config's [ui] theme_dir (tests pass theme_dir)
        folders = (theme_dir,) if theme_dir is not None else (THEME_DIR, user_theme_dir(), config.ui.theme_dir)
        themes, self.theme_errors = load_themes(*folders)
        self.theme_names: list[str] = []
        for t in themes:
            self.register_theme(t)
            self.theme_names.append(t.name)
        self.wanted_theme = theme or config.ui.theme  # --theme beats [ui] theme

    # ------------------------------------------------------------- set-up
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {**super().get_theme_variable_defaults(), **VARIABLE_DEFAULTS}

    def on_mount(self) -> None:
        for err in self.theme_errors:
            self.notify(f"theme file skipped: {err.message}", severity="warning", timeout=8)
        want = self.wanted_theme or DEFAULT_THEME
        if want not in self.available_themes and f"flowtui-{want}" in self.available_themes:
            want = f"flowtui-{want}"  # --theme light, [ui] theme = "contrast"
        if want in self.available_themes:
            self.theme = want
        else:
            if self.wanted_theme:
                self.notify(f"no theme {want!r}; using {DEFAULT_THEME}", severity="warning")
            self.theme = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        if self.bus is not None:
            self._sub = self.bus.subscribe()
        self.push_screen(DashboardScreen())
        self._load_history()
        if self.engine is not None:
            self.run_worker(self._run_engine(), name="engine", group="engine", exit_on_error=False,
                            description="probe engine")
        if self.maintainer is not None:  # each round runs in a thread (Maintainer.run)
            self.run_worker(self.maintainer.run(), name="maintenance", group="maintenance",
                            exit_on_error=False, description="roll-ups and retention")
        if self.dmarc is not None:
            self.run_worker(self.dmarc.run(), name="dmarc", group="dmarc", exit_on_error=False,
                            description="DMARC report collector")
        self.set_interval(1 / self.tick_hz, self._tick, name="ui tick")

    async def _run_engine(self) -> None:
        assert self.engine is not None
        await self.engine.start(schedule=self.schedule)
        self.engine_started = True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR:
            self.notify(f"{event.worker.description or event.worker.name} failed: {event.worker.error}",
                        severity="error", timeout=15)

    @work(thread=True, group="store", exit_on_error=False, description="read recent probes")
    def _load_history(self) -> None:
        history: dict[str, list[ProbeResult]] = {}
        for name in list(self.routes):
            results = self.store.last_probes(name, HISTORY)
            delivered = [r for r in results if r.detected_at is not None]
            if delivered:  # the hop count of the newest delivery
                full = self.store.probe(delivered[-1].probe_id)
                if full is not None:
                    results = [full if r.probe_id == full.probe_id else r for r in results]
            history[name] = results
        rule_alerts = self.store.alerts(limit=HISTORY_ALERTS)
        self.post_message(HistoryLoaded(history, rule_alerts))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        for name, results in message.history.items():
            state = self.routes.get(name)
            if state is None:
                continue
            for r in results:
                if r.probe_id not in state.results:
                    state.fold(r)
                self._note_alert(r)
            self.dirty.add(name)
        for alert in message.alerts:  # rule alerts from before this start, acknowledgements kept
            for resolved in ((False, True) if alert.state == "resolved" else (False,)):
                entry = rule_alert_entry(alert, resolved=resolved)
                self.alerts.setdefault(entry.key, entry)
                if alert.acked_at is not None and not resolved:
                    self.acked.add(entry.key)
        self.history_loaded = True
        self.flush()
        self._alerts_changed()

    def acknowledge(self, key: str) -> None:
        """Acknowledge an alert-log line. A firing rule alert's acknowledgement is
        stored (``flowtui alerts`` shows it, a restart keeps it) and silences its
        notifications; a failed probe's line is marked for this session."""
        self.acked.add(key)
        entry = self.alerts.get(key)
        if entry is None or not entry.alert_id:
            return
        if self.alerting is not None:
            self.alerting.ack(entry.alert_id)  # a queue put: the writer thread stores it
        else:
            self.store.ack_alert(entry.alert_id)

    # ------------------------------------------------------------- events
    def _tick(self) -> None:
        changed_alerts = False
        if self._sub is not None:
            for event in self._sub.drain():
                if isinstance(event, ProbeCompleted):
                    r = event.result
                    state = self.routes.get(r.route)
                    if state is None:
                        continue
                    state.fold(r)
                    self.dirty.add(r.route)
                    changed_alerts |= self._note_alert(r)
                    probe_changed = getattr(self.screen, "probe_changed", None)  # the inspector
                    if probe_changed is not None:
                        probe_changed(r)
                elif isinstance(event, (AlertRaised, AlertResolved)):  # alert rules (issue: alerts)
                    entry = rule_alert_entry(event.alert, resolved=isinstance(event, AlertResolved))
                    self.alerts[entry.key] = entry
                    changed_alerts = True
                elif isinstance(event, DmarcReportsImported):
                    self._dmarc_changed()
        now = self.clock()
        if now - self._last_full >= 1.0:  # ages move every second
            self._last_full = now
            self.dirty.update(self.routes)
        self.flush()
        if changed_alerts:
            self._alerts_changed()

    def _note_alert(self, r: ProbeResult) -> bool:
        state = self.routes.get(r.route)
        entry = alert_for(r, state.route.timeout_s if state is not None else None)
        if entry is None or entry.key in self.alerts:
            return False
        self.alerts[entry.key] = entry
        return True

    def _dmarc_changed(self) -> None:
        from flowtui.ui.dmarcscreen import DmarcScreen

        if isinstance(self.screen, DmarcScreen):
            self.screen.reload()

    def _alerts_changed(self) -> None:
        from flowtui.ui.screens import AlertLogScreen

        if isinstance(self.screen, AlertLogScreen):
            self.screen.refresh_alerts()
        elif isinstance(self.screen, DashboardScreen):
            self.screen.refresh_recent_alerts()

    # ------------------------------------------------------------- the table
    def colours(self) -> dict[str, str]:
        variables = self.get_css_variables()
        out = {}
        for health, var in (("ok", "health-ok"), ("warn", "health-warn"), ("crit", "health-crit"),
                            ("paused", "health-paused"), ("no data", "health-nodata"), ("spark", "spark"),
                            ("slow", "hop-slow"), ("submit", "bar-submit"), ("transit", "bar-transit")):
            try:
                out[health] = Color.parse(variables.get(var, VARIABLE_DEFAULTS[var])).hex
            except Exception:
                pass
        return out

    def _dashboard(self) -> DashboardScreen | None:
        return self.screen if isinstance(self.screen, DashboardScreen) else None

    def visible(self, name: str) -> bool:
        return not self.route_filter or self.route_filter in name.lower()

    def ceiling(self) -> float:
        """One sparkline scale shared by every route: the slowest route's p95, rounded up to 1-2-5."""
        now = self.clock()
        top = max([0.1, *((s.stats(now).p95 or 0.0) for s in self.routes.values())])
        return nice_ceiling(top)

    def spark_width(self, table: DataTable) -> int:
        width = self.size.width  # the terminal's: known before the table is laid out
        fixed = sum(COLUMN_WIDTHS.values()) + self.route_width() + PADDING
        return max(6, min(60, width - fixed)) if width else 12

    def route_width(self) -> int:
        return max(5, min(24, max((len(n) for n in self.routes), default=5)))

    def sync_rows(self, screen: DashboardScreen) -> None:
        """Add and remove rows for the filter (never clear(): the cursor stays)."""
        table = screen.query_one("#routes", DataTable)
        for name in self.routes:
            present = name in table.rows
            if self.visible(name) and not present:
                table.add_row(*([""] * len(COLUMNS)), key=name, height=1)
                self._rendered.pop(name, None)
                self.dirty.add(name)
            elif not self.visible(name) and present:
                table.remove_row(name)
                self._rendered.pop(name, None)
        self.flush(full=True)

    def flush(self, full: bool = False) -> None:
        """Write dirty routes into the table, only the cells that changed."""
        screen = self._dashboard()
        if screen is None or not screen.is_mounted:
            return  # a hidden dashboard is not repainted; it re-syncs on resume
        try:
            table = screen.query_one("#routes", DataTable)
        except Exception:
            return
        names = list(self.routes) if full else [n for n in self.dirty if n in self.routes]
        self.dirty.clear()
        now = self.clock()
        colours = self.colours()
        ceiling, width = self.ceiling(), self.spark_width(table)
        changed: list[str] = []
        with self.batch_update():
            updates: list[tuple[str, str, str]] = []
            for name in names:
                if name not in table.rows:
                    continue
                cells = row_cells(self.routes[name], now, ceiling, width, colours)
                old = self._rendered.get(name, {})
                for key, value in cells.items():
                    if old.get(key) == value:
                        continue
                    if key == "spark" and len(value) != len(old.get(key, "")):
                        table.update_cell(name, key, value, update_width=True)  # the trend follows the size
                    else:
                        # fixed-width columns, and only the changed rows repaint (bench/ui_bench.py:
                        # re-measuring columns per cell took 40 s to draw 500 routes)
                        updates.append((name, key, value))
                if cells != old:
                    changed.append(name)
                self._rendered[name] = cells
            if isinstance(table, RouteTable):
                table.update_cells(updates)
            else:  # pragma: no cover - the dashboard always builds a RouteTable
                for name, key, value in updates:
                    table.update_cell(name, key, value)
            if changed:
                self._sort(table)
            self._summary(screen, now)
        if changed:
            self.post_message(RoutesFlushed(tuple(changed)))

    def _sort_key(self, name: str) -> tuple:
        state = self.routes[name]
        now = self.clock()
        if self.sort_by == "name":
            return (name,)
        if self.sort_by == "p95":
            return (-(state.stats(now).p95 or -1), name)
        if self.sort_by == "loss":
            return (-(state.stats(now).loss_ratio or -1), name)
        return (HEALTH_ORDER[state.health(now)], name)

    def _sort(self, table: DataTable) -> None:
        order = {name: self._sort_key(name) for name in self.routes if name in table.rows}
        current = [row.key.value for row in table.ordered_rows]
        wanted = sorted(order, key=order.__getitem__)
        if current != wanted:
            keys = {safe_text(n): order[n] for n in order}
            table.sort("route", key=lambda cell: keys.get(cell, ("~",)))

    def failing_now(self) -> int:
        """Alert-log lines in the stats window that are not acknowledged (resolutions aside)."""
        since = self.clock() - WINDOW_S
        return sum(
            1 for a in self.alerts.values() if a.at >= since and a.key not in self.acked and a.severity != "info"
        )

    def _summary(self, screen: DashboardScreen, now: float) -> None:
        counts = {h: 0 for h in HEALTH_ORDER}
        for state in self.routes.values():
            counts[state.health(now)] += 1
        c = self.colours()
        overall = "crit" if counts["crit"] else "warn" if counts["warn"] else "ok" if counts["ok"] else "no data"
        parts = [f"[b]flowtui[/b]  [{c.get(overall, '')}]{overall.upper()}[/]"]
        for h, glyph in (("ok", "●"), ("warn", "▲"), ("crit", "✖"), ("paused", "‖"), ("no data", "○")):
            if counts[h] or h in ("ok", "warn", "crit"):
                parts.append(f"[{c.get(h, '')}]{glyph} {counts[h]} {h}[/]")
        parts.append(f"alerts {self.failing_now()}")
        parts.append(f"sort {self.sort_by}")
        if self.route_filter:
            parts.append(f"filter '{safe_text(self.route_filter)}'")
        screen.query_one("#summary", Static).update("  ".join(parts))

    # ------------------------------------------------------------- actions
    def selected_route(self) -> str | None:
        screen = self._dashboard()
        if screen is None:
            return None
        table = screen.query_one("#routes", DataTable)
        if table.row_count == 0:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None

    def action_inspect(self, route: str | None = None, probe_id: str | None = None) -> None:
        from flowtui.ui.screens import InspectorScreen

        route = route or self.selected_route()
        if route is not None:
            self.push_screen(InspectorScreen(route, probe_id))

    def action_detail(self) -> None:
        from flowtui.ui.screens import DetailScreen

        route = self.selected_route()
        if route is not None:
            self.push_screen(DetailScreen(route))

    def action_alerts(self) -> None:
        from flowtui.ui.screens import AlertLogScreen

        if not isinstance(self.screen, AlertLogScreen):
            self.push_screen(AlertLogScreen())

    def action_dmarc(self) -> None:
        from flowtui.ui.dmarcscreen import DmarcScreen

        if not isinstance(self.screen, DmarcScreen):
            self.push_screen(DmarcScreen())

    def action_help(self) -> None:
        from flowtui.ui.screens import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_probe(self) -> None:
        route = self.selected_route()
        if route is None:
            return
        if self.engine is None or not self.engine_started:
            self.notify("the engine is not running", severity="warning")
            return
        self.engine.probe_now(route)
        self.notify(f"probe sent on {safe_text(route)}", timeout=2)

    def action_pause(self) -> None:
        route = self.selected_route()
        if route is None:
            return
        state = self.routes[route]
        state.paused = not state.paused
        if self.engine is not None:
            (self.engine.pause if state.paused else self.engine.resume)(route)
        self.notify(f"{safe_text(route)} {'paused' if state.paused else 'resumed'}", timeout=2)
        self.dirty.add(route)
        self.flush()

    def action_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        screen = self._dashboard()
        if screen is not None:
            self._sort(screen.query_one("#routes", DataTable))
        self.flush(full=True)

    def action_cycle_theme(self) -> None:
        names = self.theme_names or [self.theme]
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"theme {self.theme}", timeout=2)

    def watch_theme(self, _theme: str) -> None:
        self._rendered.clear()  # cells carry colours: repaint every row
        self.dirty.update(self.routes)
        self.call_later(self.flush)
        from flowtui.ui.screens import ThemedScreen

        if isinstance(self.screen, ThemedScreen):
            self.screen.call_later(self.screen.rerender)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Probe now", "Send a probe on the selected route", self.action_probe)
        yield SystemCommand("Pause / resume route", "Stop or restart the selected route's schedule",
                            self.action_pause)
        yield SystemCommand("Inspect latest probe", "Hop-by-hop view of the selected route", self.action_inspect)
        yield SystemCommand("Route detail", "History, percentiles and recent probes", self.action_detail)
        yield SystemCommand("Alert log", "Failed probes and alerts", self.action_alerts)
        yield SystemCommand("DMARC reports", "Who sends as your domains: pass share, sources", self.action_dmarc)
        yield SystemCommand("Cycle theme", "Next flowtui theme", self.action_cycle_theme)
        yield SystemCommand("Keys", "Every key binding", self.action_help)

    # ------------------------------------------------------------- quitting
    async def action_quit(self) -> None:
        await self.shutdown()
        self.exit()

    async def shutdown(self) -> None:
        """Stop the engine (awaiting its tasks), stop reading, close the store. Idempotent."""
        if self._shut_down:
            return
        self._shut_down = True
        if self.engine is not None:
            self.workers.cancel_group(self, "engine")
            await self.engine.stop()
        self.workers.cancel_group(self, "dmarc")
        if self.alerting is not None:  # after the engine (it sees the last results), before the store
            await self.alerting.stop()
        if self._sub is not None:
            self._sub.close()
        self.workers.cancel_group(self, "store")
        if self.maintainer is not None:  # a round in flight finishes before the store closes
            self.maintainer.stop()
            self.workers.cancel_group(self, "maintenance")
            await asyncio.to_thread(self.maintainer.wait_idle)
        await asyncio.to_thread(self.store.close)
