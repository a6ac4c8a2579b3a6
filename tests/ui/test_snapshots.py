"""Snapshots of the dashboard, inspector and alert log: scripted store, frozen clock, no engine."""

from __future__ import annotations

import pytest

from flowtui.ui.app import FlowApp
from flowtui.ui.screens import AlertLogScreen, InspectorScreen
from ui.scripted import NOW, scripted

THEMES = ("flowtui-noc", "flowtui-light", "flowtui-contrast")
SIZES = ((80, 24), (160, 48))


async def _until(pilot, cond, tries: int = 100) -> None:
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


@pytest.fixture
def app_factory(tmp_path):
    stores = []

    def make(theme: str) -> FlowApp:
        config, store = scripted(tmp_path)
        stores.append(store)
        return FlowApp(config, store, theme=theme, clock=lambda: NOW, tick_hz=4)

    yield make
    for s in stores:
        s.close()


async def _dashboard(pilot) -> None:
    await _until(pilot, lambda: pilot.app.history_loaded)
    await pilot.pause()


async def _inspector(pilot) -> None:
    await _dashboard(pilot)
    await pilot.press("down", "enter")  # branch-slow: a slow hop and a changed relay
    await _until(pilot, lambda: isinstance(pilot.app.screen, InspectorScreen) and pilot.app.screen.loaded)
    await pilot.pause()


async def _alerts(pilot) -> None:
    await _dashboard(pilot)
    await pilot.press("a")
    await _until(pilot, lambda: isinstance(pilot.app.screen, AlertLogScreen))
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("screen", ("dashboard", "inspector", "alerts"))
def test_snapshot(snap_compare, app_factory, screen, theme, size):
    before = {"dashboard": _dashboard, "inspector": _inspector, "alerts": _alerts}[screen]
    assert snap_compare(app_factory(theme), terminal_size=size, run_before=before)
