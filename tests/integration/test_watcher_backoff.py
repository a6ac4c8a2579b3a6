"""Reconnect backoff: grows with failures in a row, starts again after a good session (real IMAP)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from flowtui.core.config import load_config
from flowtui.core.probes import imap as imap_mod
from flowtui.core.probes.imap import BACKOFF_S, MailboxWatcher
from flowtui.lab.embedded import EmbeddedLab


async def test_backoff_resets_after_a_session_that_connected(lab_dir, monkeypatch):
    async with await EmbeddedLab.start(lab_dir):
        settings = load_config(lab_dir / "lab.toml").routes[0].imap
        settings = replace(settings, timeout_s=5)
        real_open, real_sleep = imap_mod.open_connection, asyncio.sleep
        # the session, then its push-delay calibration (a second connection), are real
        plan = ["refuse", "refuse", "refuse", "real", "real", "refuse", "refuse"]
        sleeps: list[float] = []

        async def open_connection(s, conn_lost_cb=None):
            step = plan.pop(0) if plan else "real"
            if step == "refuse":
                raise ConnectionRefusedError("refused (scripted)")
            return await real_open(s, conn_lost_cb=conn_lost_cb)

        async def quick_sleep(seconds):
            if seconds in BACKOFF_S:
                sleeps.append(seconds)
            await real_sleep(0.01 if seconds in BACKOFF_S else seconds)

        monkeypatch.setattr(imap_mod, "open_connection", open_connection)
        monkeypatch.setattr(imap_mod.asyncio, "sleep", quick_sleep)
        watcher = MailboxWatcher(settings, b"k" * 64, on_probe=None, busy=lambda: False)
        task = asyncio.create_task(watcher.run())
        try:
            async with asyncio.timeout(20):
                await watcher.connected_once.wait()
                while watcher.state not in ("idle", "polling"):
                    await real_sleep(0.01)
                watcher._lost.set()  # the server drops the connection
                while len(sleeps) < 6:
                    await real_sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    # three refusals: 1, 2, 4 s; then a good session; the drop and the next refusals start at 1 s again
    assert sleeps[:6] == [BACKOFF_S[0], BACKOFF_S[1], BACKOFF_S[2], BACKOFF_S[0], BACKOFF_S[1], BACKOFF_S[2]]
