"""The DMARC screen against the real lab: reports sent by SMTP into a Dovecot folder are
collected by the running monitor, shown on the screen, and a failing source fires the
pass-rate alert (Pilot)."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import DataTable, Static

from conftest import need_real_mail
from flowtui.core.alerting import AlertEngine
from flowtui.core.config import load_config
from flowtui.core.dmarc.collect import DmarcCollector
from flowtui.core.engine import Engine
from flowtui.core.events import EventBus
from flowtui.core.headers import safe_text
from flowtui.core.storage import Store
from flowtui.ui.app import FlowApp
from flowtui.ui.dmarcscreen import DmarcScreen
from flowtui.ui.screens import AlertLogScreen
from integration.dmarclab import create_folder, deliver, report_mail, report_xml, write_dmarc_config
from integration.test_dmarc_postfix import lab  # noqa: F401 - the module-scoped Postfix lab

pytestmark = pytest.mark.realmail

EVIL_NAME = "[red]mail[/red]\x1b[2J.example.com"


async def until(pilot, cond, timeout: float = 30.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await pilot.pause(0.1)


def rows(app) -> list[str]:
    if not isinstance(app.screen, DmarcScreen):
        return []
    return [r.key.value for r in app.screen.query_one("#dmarc-sources", DataTable).ordered_rows]


async def test_lab_reports_reach_the_screen_and_a_failing_source_fires_the_pass_rate_alert(lab, tmp_path):  # noqa: F811
    need_real_mail()
    folder = "DMARC"
    await create_folder(lab, folder)
    await deliver(lab, report_mail(report_xml("ui-1", [("192.0.2.10", 100, "pass", "pass")]), "ui-1"), folder)
    cfg = write_dmarc_config(lab, "dmarc-ui.toml", str(tmp_path / "ui.db"), folder, interval="1s", alerts=[
        {"kind": "dmarc_pass_rate", "pass_rate": 0.9, "volume": 10},
        {"kind": "lost"},
    ])
    config = load_config(cfg)
    store = Store(config.monitor.database)
    bus = EventBus()
    engine = Engine(config, store, bus)
    alerting = AlertEngine(config, store, bus, tick_s=0.2)
    names = {"192.0.2.10": "mail.example.com", "198.51.100.66": EVIL_NAME}
    app = FlowApp(config, store, engine=engine, bus=bus, alerting=alerting, schedule=False,
                  dmarc=DmarcCollector(config.dmarc, store, bus), dmarc_lookup=names.get)
    await alerting.start()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("m")
        assert isinstance(app.screen, DmarcScreen)
        await until(pilot, lambda: rows(app) == ["192.0.2.10"], what="the first report on the screen")
        table = app.screen.query_one("#dmarc-sources", DataTable)
        await until(pilot, lambda: str(table.get_cell("192.0.2.10", "rdns")) == "mail.example.com", what="rDNS")
        assert "example.com" in str(app.screen.query_one("#dmarc-title", Static).render())
        await until(pilot, lambda: "collector ok " in str(app.screen.query_one("#dmarc-status", Static).render()),
                    what="the collector's status line")
        assert not [a for a in app.alerts.values() if a.kind.startswith("dmarc_pass_rate")]

        # a second report: a source failing DMARC for 40 of 140 messages (71 % < 90 %)
        await deliver(lab, report_mail(report_xml("ui-2", [("198.51.100.66", 40, "fail", "fail")]), "ui-2", "gz"), folder)
        await until(pilot, lambda: [a for a in app.alerts.values() if a.kind == "dmarc_pass_rate fired"],
                    what="the pass-rate alert")
        fired = [a for a in app.alerts.values() if a.kind == "dmarc_pass_rate fired"][0]
        assert "example.com" in fired.message and "71%" in fired.message
        await until(pilot, lambda: "198.51.100.66" in rows(app), what="the failing source on the screen")
        await pilot.press("3")  # sources failing alignment
        await until(pilot, lambda: rows(app) == ["198.51.100.66"], what="the failing view")
        await until(pilot, lambda: str(table.get_cell("198.51.100.66", "rdns")) == safe_text(EVIL_NAME), what="escaped rDNS")
        assert "\x1b" not in str(table.get_cell("198.51.100.66", "rdns"))
        await pilot.press("escape", "a")
        assert isinstance(app.screen, AlertLogScreen)
        log = app.screen.query_one("#alerts", DataTable)
        assert any(str(log.get_cell(k.value, "kind")) == "dmarc_pass_rate fired" for k in log.rows)
        await pilot.press("q")
    stored = [a for a in Store(config.monitor.database).alerts() if a.rule == "dmarc_pass_rate"]
    assert stored and stored[0].state == "fired" and stored[0].id.startswith("dmarc_pass_rate|example.com|")
