"""Route detail, alert filters and the lazy UI import, on scripted data (no engine)."""

from __future__ import annotations

import subprocess
import sys

from textual.widgets import DataTable

from flowtui.ui.app import FlowApp
from flowtui.ui.screens import AlertLogScreen, DetailScreen
from ui.scripted import NOW, scripted


async def _ready(pilot, cond) -> None:
    for _ in range(100):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("not reached")


async def test_detail_windows_chart_and_recent_probes(tmp_path):
    config, store = scripted(tmp_path)
    app = FlowApp(config, store, clock=lambda: NOW)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await _ready(pilot, lambda: app.history_loaded)
            await pilot.press("down", "d")  # branch-slow
            await _ready(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.loaded)
            screen = app.screen
            assert screen.route == "branch-slow" and len(screen.results) == 30  # 1 h window: all 30
            await pilot.press("1")  # 15 min
            await _ready(pilot, lambda: len(screen.results) == 15)
            chart = str(screen.query_one("#chart").render())
            assert "█" in chart and "submit" in chart
            assert "p95" in str(screen.query_one("#percentiles").render())
            recent = screen.query_one("#recent", DataTable)
            assert recent.row_count == 15
            # the hop count of each listed probe (scripted deliveries have 4 hops), not "-"
            assert {str(recent.get_row_at(i)[6]) for i in range(recent.row_count)} == {"4"}
            await pilot.pause(0.1)
            # at 80 columns no chart line wraps: every line fits the chart's width
            widget = screen.query_one("#chart")
            lines = chart.splitlines()
            assert max(len(line) for line in lines) <= widget.content_size.width, (widget.content_size, lines)
            assert widget.content_size.height == len(lines)  # nothing wrapped onto extra lines
            assert lines[-2].strip().endswith("Z") and ":" in lines[-2]  # the time axis
    finally:
        store.close()


async def test_detail_chart_grows_on_a_wall_screen(tmp_path):
    config, store = scripted(tmp_path)
    app = FlowApp(config, store, clock=lambda: NOW)
    try:
        async with app.run_test(size=(200, 60)) as pilot:
            await _ready(pilot, lambda: app.history_loaded)
            await pilot.press("d")
            await _ready(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.loaded)
            await pilot.pause(0.1)
            lines = str(app.screen.query_one("#chart").render()).splitlines()
            bars = [line for line in lines if "│" in line]
            assert len(bars) >= 20 and max(len(line) for line in lines) > 180
    finally:
        store.close()


async def test_alert_log_filters_by_severity_and_route(tmp_path):
    config, store = scripted(tmp_path)
    app = FlowApp(config, store, clock=lambda: NOW)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await _ready(pilot, lambda: app.history_loaded)
            await pilot.press("a")
            screen = app.screen
            assert isinstance(screen, AlertLogScreen)
            table = screen.query_one("#alerts", DataTable)
            assert table.row_count == 5
            await pilot.press("s", "s")  # all -> crit -> warn
            assert screen.severity == "warn" and table.row_count == 0
            await pilot.press("s", "slash", *"hq")
            assert screen.route_filter == "hq" and table.row_count == 0
    finally:
        store.close()


def test_cli_imports_no_ui_until_the_tui_runs():
    code = "import sys, flowtui.cli; assert 'textual' not in sys.modules and 'flowtui.ui' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_detail_window_longer_than_retention_reads_the_rollups(tmp_path):
    import dataclasses

    from flowtui.core.rollup import Maintainer

    config, store = scripted(tmp_path)
    # raw rows kept for 1 h only: the 24 h window must come from the roll-ups
    config = dataclasses.replace(config, monitor=dataclasses.replace(config.monitor, retention_s=3600.0))
    Maintainer(store, 3600.0, 730 * 86400.0, grace_s=180).run_once(now=NOW + 3 * 3600)
    later = NOW + 3 * 3600
    app = FlowApp(config, store, clock=lambda: later)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await _ready(pilot, lambda: app.history_loaded)
            await pilot.press("down", "d")  # branch-slow
            await _ready(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.loaded)
            screen = app.screen
            await pilot.press("3")  # 24 h > 1 h of raw rows
            await _ready(pilot, lambda: screen.rollup is not None)
            agg, split, trend = screen.rollup
            assert split.source in ("rollup", "rollup+raw") and agg.counts["count"] == 30
            await pilot.pause(0.1)
            assert "roll-ups" in str(screen.query_one("#chart").render())
            assert "30 probes" in str(screen.query_one("#percentiles").render())
            await pilot.press("2")  # 1 h: raw rows again (none left after the prune: an empty window)
            await _ready(pilot, lambda: screen.rollup is None)
    finally:
        store.close()


async def test_a_tall_screen_shows_the_newest_alerts_below_the_routes(tmp_path):
    config, store = scripted(tmp_path)
    app = FlowApp(config, store, clock=lambda: NOW)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await _ready(pilot, lambda: app.history_loaded)
            await pilot.pause(0.2)
            panel = app.screen.query_one("#dash-alerts")
            assert panel.display and app.screen.has_class("tall")
            text = str(panel.render())
            newest = max(app.alerts.values(), key=lambda a: a.at)
            assert "recent alerts" in text and newest.message[:20] in text
            await pilot.resize_terminal(80, 24)  # an SSH session: the routes get the whole screen
            await pilot.pause(0.2)
            assert not app.screen.has_class("tall") and not panel.display
    finally:
        store.close()


async def test_the_inspector_follows_the_probe_it_shows(tmp_path):
    """A probe on screen that turns from pending to lost to late changes in place."""
    import dataclasses

    from flowtui.core.events import EventBus, ProbeCompleted
    from flowtui.core.model import ProbeState
    from flowtui.ui.screens import InspectorScreen

    config, store = scripted(tmp_path)
    newest = store.last_probes("hq-to-mailbox", 1, with_hops=True)[0]
    pending = dataclasses.replace(newest, probe_id="p-new", seq=newest.seq + 1, sent_at=NOW - 5,
                                  state=ProbeState.PENDING, total_s=None, transit_s=None, detected_at=None, hops=())
    store.write_result(pending)
    store.flush_sync()
    bus = EventBus()
    app = FlowApp(config, store, bus=bus, clock=lambda: NOW)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await _ready(pilot, lambda: app.history_loaded)
            app.action_inspect("hq-to-mailbox", "p-new")
            await _ready(pilot, lambda: isinstance(app.screen, InspectorScreen) and app.screen.loaded)
            title = lambda: str(app.screen.query_one("#probe-title").render())  # noqa: E731
            assert "pending" in title()
            bus.publish(ProbeCompleted(dataclasses.replace(pending, state=ProbeState.LOST)))
            await _ready(pilot, lambda: "lost" in title())
            late = dataclasses.replace(pending, state=ProbeState.LATE, total_s=42.0, detected_at=NOW + 37,
                                       hops=newest.hops)
            bus.publish(ProbeCompleted(late))
            await _ready(pilot, lambda: "late" in title())
            assert app.screen.query_one("#hops").row_count == len(newest.hops)
    finally:
        store.close()
