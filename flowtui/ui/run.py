"""Run the full-screen monitor on a config: store, bus, engine and app on one loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from flowtui.core.alerting import AlertEngine
from flowtui.core.engine import Engine
from flowtui.core.notify import build_notifiers
from flowtui.core.events import EventBus
from flowtui.core.model import Config
from flowtui.core.storage import open_store


async def run_tui(config: Config, theme: str | None = None,
                  on_started: Callable[[], Awaitable[None]] | None = None) -> int:
    from flowtui.ui.app import FlowApp

    store = await asyncio.to_thread(open_store, config.path, config.monitor.database)
    bus = EventBus()
    engine = Engine(config, store, bus)
    # alert rules run beside the engine, as in headless mode (no bell: the UI rings it)
    alerting = AlertEngine(config, store, bus, build_notifiers(config.notify, bell_stream=None))
    from flowtui.core.rollup import Maintainer

    dmarc = lookup = None
    if config.dmarc is not None:
        from flowtui.core.dmarc.collect import DmarcCollector
        from flowtui.core.dmarc.rdns import dns_lookup

        lookup = dns_lookup(config.dns.nameservers, config.dns.timeout_s)
        dmarc = DmarcCollector(config.dmarc, store, bus)
    app = FlowApp(config, store, engine=engine, bus=bus, theme=theme, alerting=alerting,
                  maintainer=Maintainer.for_config(store, config), dmarc=dmarc, dmarc_lookup=lookup)
    await alerting.start()
    try:
        await app.run_async()
    finally:
        await app.shutdown()  # idempotent: q already did it
    return app.return_code or 0
