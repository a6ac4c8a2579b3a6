"""The DMARC screen on the corpus, keyboard only, at 80x24 (no mail servers needed)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Static

from flowtui.core.config import load_config
from flowtui.core.dmarc.importer import import_bytes, import_files
from flowtui.core.storage import Store
from flowtui.ui.app import FlowApp
from flowtui.ui.dmarcscreen import DmarcScreen

DATA = Path(__file__).parent.parent / "data" / "dmarc"
NOW = 1793577600 + 3 * 86400


def _app(tmp_path) -> tuple[FlowApp, Store]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[monitor]\ndatabase = "d.db"\n[[routes]]\nname = "r"\nfrom = "a@example.com"\nto = "b@example.com"\n'
        '[routes.smtp]\nhost = "127.0.0.1"\n[routes.imap]\nhost = "127.0.0.1"\n'
    )
    config = load_config(cfg)
    store = Store(config.monitor.database)
    import_files(store, [str(p) for p in sorted(DATA.iterdir()) if p.is_file() and p.suffix != ".toml"])
    return FlowApp(config, store, clock=lambda: NOW), store


async def _until(pilot, cond, what="condition"):
    for _ in range(100):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(what)


def _rows(app) -> list[str]:
    return [r.key.value for r in app.screen.query_one("#dmarc-sources", DataTable).ordered_rows]


def _title(app) -> str:
    return str(app.screen.query_one("#dmarc-title", Static).render())


async def test_keys_views_domains_and_window(tmp_path):
    app, store = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("m")
        assert isinstance(app.screen, DmarcScreen)
        await _until(pilot, lambda: app.screen.loaded, "loaded")
        assert _rows(app)[0] == "192.0.2.10" and len(_rows(app)) == 6
        assert "example.com (1/2)" in _title(app)
        assert "no [dmarc] mailbox configured" in str(app.screen.query_one("#dmarc-status", Static).render())
        domains = str(app.screen.query_one("#dmarc-domains", Static).render())
        assert "93%" in domains and "69%" in domains and "▇█" in domains
        await pilot.press("3")
        assert _rows(app) == ["198.51.100.23", "203.0.113.77", "2001:db8::25"]
        await pilot.press("2")
        assert len(_rows(app)) == 6  # all first seen within the week before NOW
        await pilot.press("right_square_bracket")
        assert "example.org (2/2)" in _title(app)
        await pilot.press("1")
        assert _rows(app) == ["198.51.100.5", "203.0.113.9"]
        await pilot.press("w")  # 90d
        await _until(pilot, lambda: "90d" in _title(app), "90d")
        await pilot.press("w")  # 7d: the corpus ended 3 days before NOW
        await _until(pilot, lambda: "DMARC 7d" in _title(app), "7d")
        assert len(_rows(app)) == 2
        await pilot.press("escape")
        assert not isinstance(app.screen, DmarcScreen)
        await pilot.press("q")


async def test_reporter_text_is_escaped_on_screen(tmp_path):
    app, store = _app(tmp_path)
    xml = (DATA / "duplicate-google.xml").read_text()
    xml = xml.replace("14012345678901234567", "evil").replace("<domain>example.com</domain>",
                                                              "<domain>[blink]evil[/blink].example</domain>", 1)
    assert import_bytes(store, "evil.xml", xml.encode())[0].status == "imported"
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("m")
        await _until(pilot, lambda: app.screen.loaded, "loaded")
        for _ in range(3):
            if "evil" in _title(app):
                break
            await pilot.press("right_square_bracket")
        assert "[blink]evil[/blink].example" in _title(app)  # shown as written, not taken as markup
        await pilot.press("q")


def test_fit_series_pools_days_into_the_width():
    from flowtui.ui.dmarcscreen import fit_series

    series = [{"day": f"d{i}", "messages": 10, "pass": 10 if i < 80 else 0, "pass_rate": None} for i in range(90)]
    series[0]["messages"] = series[0]["pass"] = 0
    fitted = fit_series(series, 30)
    assert len(fitted) == 30 and sum(c["messages"] for c in fitted) == sum(c["messages"] for c in series)
    assert fitted[-1]["day"] == "d89" and fitted[-1]["pass_rate"] == 0.0 and fitted[0]["pass_rate"] == 1.0
    assert fit_series(series[:10], 30) == series[:10]
