"""Pilot tests against the embedded lab, in-process: real SMTP hops, a real IMAP mailbox."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from flowtui.core.config import load_config
from flowtui.core.engine import Engine
from flowtui.core.events import EventBus
from flowtui.core.model import ProbeState
from flowtui.core.storage import Store, StoreClosed
from flowtui.lab.embedded import EmbeddedLab
from flowtui.ui.app import FlowApp, RoutesFlushed
from flowtui.ui.screens import AlertLogScreen, InspectorScreen
from textual.widgets import DataTable


async def until(pilot, cond, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached within %ss" % timeout)
        await pilot.pause(0.1)


@pytest.fixture
async def lab(tmp_path):
    lab = await EmbeddedLab.start(tmp_path / "lab")
    yield lab
    await lab.aclose()


def make_app(lab, schedule: bool, **route_changes) -> tuple[FlowApp, Store, Engine]:
    config = load_config(lab.dir / "lab.toml")
    config = replace(config, routes=tuple(replace(r, **route_changes) for r in config.routes))
    store = Store(config.monitor.database)
    bus = EventBus()
    engine = Engine(config, store, bus)
    return FlowApp(config, store, engine=engine, bus=bus, schedule=schedule), store, engine


async def started(pilot) -> None:
    app = pilot.app
    await until(pilot, lambda: app.engine_started)
    await app.engine.wait_ready(10)


def cell(app, route: str, column: str) -> str:
    return str(app.screen.query_one("#routes", DataTable).get_cell(route, column))


async def test_dashboard_fills_from_the_lab(lab):
    messages = []
    app, store, engine = make_app(lab, schedule=True, interval_s=1.0, jitter_s=0.1)
    name = app.config.routes[0].name
    async with app.run_test(size=(80, 24), message_hook=messages.append) as pilot:
        await started(pilot)
        await until(pilot, lambda: sum(r.state is ProbeState.DELIVERED for r in app.routes[name].results.values()) >= 2)
        await pilot.pause(0.6)  # one more UI tick
        assert "ok" in cell(app, name, "health")
        assert cell(app, name, "last").endswith("s")
        assert cell(app, name, "hops") == "3"  # two relays and the mailbox delivery
        assert cell(app, name, "loss") == "0%"
        assert any(ch in cell(app, name, "spark") for ch in "▁▂▃▄▅▆▇█")
        assert any(isinstance(m, RoutesFlushed) and name in m.routes for m in messages)
        await pilot.press("q")
    assert store._closed.is_set()


async def test_p_probes_now_and_the_row_shows_it_then_the_inspector_shows_every_hop(lab):
    app, store, engine = make_app(lab, schedule=False)
    name = app.config.routes[0].name
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.pause(0.5)
        assert cell(app, name, "last") == "-" and not app.routes[name].results
        await pilot.press("p")
        await until(pilot, lambda: any(r.state is ProbeState.DELIVERED for r in app.routes[name].results.values()))
        await pilot.pause(0.6)
        delivered = [r for r in app.routes[name].results.values() if r.state is ProbeState.DELIVERED]
        assert len(delivered) == 1
        assert cell(app, name, "last") != "-"
        assert cell(app, name, "hops") == str(len(delivered[0].hops))

        await engine.store.flush()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, InspectorScreen) and app.screen.loaded)
        screen = app.screen
        assert screen.current.probe_id == delivered[0].probe_id
        hops = screen.query_one("#hops", DataTable)
        assert hops.row_count == len(delivered[0].hops) == 3
        paths = [str(hops.get_cell_at((i, 1))) for i in range(hops.row_count)]
        for i, want in enumerate(("hop1", "hop2", "mailbox")):
            assert paths[i].endswith(want), paths
        mtr = screen.query_one("#mtr", DataTable)
        assert mtr.row_count == 3
        await pilot.press("r")
        assert "Received:" in str(screen.query_one("#raw").render())
        await pilot.press("escape", "q")


async def test_alert_log_shows_a_held_hop_loss(lab):
    app, store, engine = make_app(lab, schedule=False, timeout_s=2.0)
    name = app.config.routes[0].name
    lab.hop(2).hold()
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await started(pilot)
            await pilot.press("p")
            await until(pilot, lambda: any(a.kind == "lost" for a in app.alerts.values()), timeout=15)
            await pilot.pause(0.6)
            assert "crit" in cell(app, name, "health")
            assert "✕" in cell(app, name, "spark")
            await pilot.press("a")
            assert isinstance(app.screen, AlertLogScreen)
            table = app.screen.query_one("#alerts", DataTable)
            rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
            assert any(r[3] == "lost" and r[2] == name for r in rows), rows
            await pilot.press("a")  # acknowledge the selected line
            assert str(table.get_row_at(0)[5]) == "✓"
            await pilot.press("escape", "q")
    finally:
        lab.hop(2).release()


async def test_space_pauses_the_route_schedule(lab):
    app, store, engine = make_app(lab, schedule=False)
    name = app.config.routes[0].name
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("space")
        await pilot.pause(0.3)
        assert name in engine.paused and "paused" in cell(app, name, "health")
        await pilot.press("space")
        await pilot.pause(0.3)
        assert name not in engine.paused
        await pilot.press("q")


async def test_q_leaves_no_task_running_and_closes_the_store(lab):
    before = set(asyncio.all_tasks())
    app, store, engine = make_app(lab, schedule=True, interval_s=1.0, jitter_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await until(pilot, lambda: any(r.state is ProbeState.DELIVERED
                                       for s in app.routes.values() for r in s.results.values()))
        tasks = engine.tasks
        assert tasks and not all(t.done() for t in tasks)
        await pilot.press("q")
    assert all(t.done() for t in tasks)
    assert not engine.tasks
    assert all(w.is_finished for w in app.workers) or not list(app.workers)
    with pytest.raises(StoreClosed):
        store.last_probes(app.config.routes[0].name)
    await asyncio.sleep(0.1)
    leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert not leftover, leftover


async def test_alert_rules_fire_into_the_alert_log_and_resolve(lab):
    """The AlertEngine runs beside the UI: a held hop fires the rule alerts, release resolves them."""
    from flowtui.core.alerting import AlertEngine

    config = load_config(lab.dir / "lab.toml")
    config = replace(config, routes=tuple(replace(r, timeout_s=2.0) for r in config.routes))
    store = Store(config.monitor.database)
    bus = EventBus()
    engine = Engine(config, store, bus)
    alerting = AlertEngine(config, store, bus, [])
    app = FlowApp(config, store, engine=engine, bus=bus, schedule=False, alerting=alerting)
    name = config.routes[0].name
    await alerting.start()
    lab.hop(2).hold()
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await started(pilot)
            await pilot.press("p")
            await until(pilot, lambda: any(a.kind == "lost fired" for a in app.alerts.values()), timeout=15)
            lab.hop(2).release()
            await pilot.press("p")
            await until(pilot, lambda: any(a.kind == "lost resolved" for a in app.alerts.values()), timeout=15)
            await pilot.press("a")
            table = app.screen.query_one("#alerts", DataTable)
            kinds = [str(table.get_row_at(i)[3]) for i in range(table.row_count)]
            assert "lost fired" in kinds and "lost resolved" in kinds
            await pilot.press("escape", "q")
    finally:
        lab.hop(2).release()
    with Store(config.monitor.database) as again:  # fired and resolved, on record
        states = {a.state for a in again.alerts(route=name) if a.rule == "lost"}
    assert states == {"resolved"}
