"""Acknowledging a rule alert in the alert log is stored, and a restart keeps it."""

from __future__ import annotations

from textual.widgets import DataTable

from flowtui.core.storage import AlertRecord
from flowtui.ui.app import FlowApp
from flowtui.ui.screens import AlertLogScreen
from ui.scripted import NOW, scripted

ALERT = AlertRecord(id="lost|hq-to-mailbox|1", route="hq-to-mailbox", rule="lost", severity="crit",
                    state="fired", fired_at=NOW - 5, message="probe #7 lost")


async def _open_log(app: FlowApp, pilot) -> DataTable:
    for _ in range(50):
        await pilot.pause(0.05)
        if app.history_loaded:
            break
    await pilot.press("a")
    assert isinstance(app.screen, AlertLogScreen)
    return app.screen.query_one("#alerts", DataTable)


async def test_ack_of_a_rule_alert_is_stored_and_kept_after_a_restart(tmp_path):
    config, store = scripted(tmp_path)
    store.write_alert(ALERT)
    store.flush_sync()
    key = f"rule:{ALERT.id}:fired"
    try:
        app = FlowApp(config, store, clock=lambda: NOW)
        async with app.run_test(size=(80, 24)) as pilot:
            table = await _open_log(app, pilot)
            assert key in table.rows, "a stored rule alert is in the log after a start"
            table.move_cursor(row=table.get_row_index(key))
            assert str(table.get_row(key)[5]) == ""
            await pilot.press("a")
            assert str(table.get_row(key)[5]) == "✓"
        store.flush_sync()
        [stored] = store.alerts(state="fired")
        assert stored.acked_at is not None

        again = FlowApp(config, store, clock=lambda: NOW)  # a restarted monitor
        async with again.run_test(size=(80, 24)) as pilot:
            table = await _open_log(again, pilot)
            assert str(table.get_row(key)[5]) == "✓"
    finally:
        store.close()
