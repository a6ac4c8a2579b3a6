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
            assert screen.query_one("#recent", DataTable).row_count == 15
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
