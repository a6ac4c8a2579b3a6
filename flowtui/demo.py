"""``flowtui demo``: embedded labs and the monitor watching them, in one process.

Needs no system packages and no root. Three routes, so every screen has
something to show: ``demo-healthy`` (two hops), ``demo-slow`` (three hops,
the second waits 1.5 s before forwarding) and ``demo-flaky`` (two hops; a
small task holds its second hop now and then, so probes go lost, then late).
The full-screen UI by default; ``--headless`` prints one line per probe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

DEMO_INTERVAL_S = 4.0
SLOW_HOP_DELAY_S = 1.5
FLAKY_TIMEOUT_S = 8.0
FLAKY_EVERY_S = 40.0  # hold the flaky route's hop 2 this often ...
FLAKY_HOLD_S = 12.0  # ... for this long


async def _flaky(lab) -> None:  # noqa: ANN001
    hop = lab.hop(2)
    while True:
        await asyncio.sleep(FLAKY_EVERY_S - FLAKY_HOLD_S)
        hop.hold()
        try:
            await asyncio.sleep(FLAKY_HOLD_S)
        finally:
            hop.release()


async def _demo(lab_dir: Path, hops: int, headless_mode: bool, theme: str | None) -> int:
    from flowtui.core.config import load_config
    from flowtui.core.model import Config
    from flowtui.lab.common import describe
    from flowtui.lab.embedded import EmbeddedLab

    async with contextlib.AsyncExitStack() as stack:
        labs = {}
        for name, n in (("healthy", hops), ("slow", max(3, hops)), ("flaky", hops)):
            lab = await EmbeddedLab.start(lab_dir / name, hops=n)
            stack.push_async_callback(lab.aclose)
            labs[name] = lab
        labs["slow"].delay[2] = SLOW_HOP_DELAY_S
        flaky = asyncio.create_task(_flaky(labs["flaky"]), name="demo flaky hop")

        async def stop_flaky() -> None:
            flaky.cancel()
            await asyncio.gather(flaky, return_exceptions=True)

        stack.push_async_callback(stop_flaky)
        routes = []
        monitor = None
        for name, lab in labs.items():
            cfg = load_config(lab_dir / name / "lab.toml")
            monitor = monitor or replace(cfg.monitor, database=str(lab_dir / "demo.db"))
            route = replace(cfg.routes[0], name=f"demo-{name}", interval_s=DEMO_INTERVAL_S, jitter_s=0.5)
            if name == "flaky":
                route = replace(route, timeout_s=FLAKY_TIMEOUT_S)
            routes.append(route)
        config = Config(path=str(lab_dir / "demo"), monitor=monitor, routes=tuple(routes))  # type: ignore[arg-type]
        if headless_mode:
            from flowtui import headless

            print(describe(labs["healthy"].state).replace("lab up", "demo lab up", 1), flush=True)
            names = ", ".join(r.name for r in routes)
            print(f"monitoring routes {names} every {DEMO_INTERVAL_S:g}s; Ctrl-C stops\n", flush=True)
            return await headless.run(config)
        from flowtui.ui.run import run_tui

        return await run_tui(config, theme=theme)


def main(args: argparse.Namespace) -> int:
    from flowtui.lab.common import check_hops

    check_hops(args.hops)  # before anything starts
    keep = args.dir is not None
    lab_dir = Path(args.dir).resolve() if keep else Path(tempfile.mkdtemp(prefix="flowtui-demo-"))
    headless_mode = bool(getattr(args, "headless", False))

    def hangup(signum, frame):
        # the terminal went away (ssh dropped, tmux killed): stop as for Ctrl-C, through the same
        # SIGINT handling (raising here could land in a weakref callback and be swallowed)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGHUP, hangup)
    try:
        return asyncio.run(_demo(lab_dir, args.hops, headless_mode, getattr(args, "theme", None)))
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGHUP, previous)
        if not keep:
            shutil.rmtree(lab_dir, ignore_errors=True)
        try:
            print("demo stopped", file=sys.stderr)
        except OSError:  # no terminal any more
            pass
