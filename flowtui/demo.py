"""``flowtui demo``: the embedded lab and the monitor watching it, in one process.

Needs no system packages and no root. Until the full-screen UI lands, the
monitor runs headless: one line per probe as it lands. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

DEMO_INTERVAL_S = 5.0


async def _demo(lab_dir: Path, hops: int) -> int:
    from flowtui import headless
    from flowtui.core.config import load_config
    from flowtui.lab.common import describe
    from flowtui.lab.embedded import EmbeddedLab

    lab = await EmbeddedLab.start(lab_dir, hops=hops)
    try:
        print(describe(lab.state).replace("lab up", "demo lab up", 1), flush=True)
        config = load_config(lab_dir / "lab.toml")
        config = replace(config, routes=tuple(replace(r, interval_s=DEMO_INTERVAL_S, jitter_s=0.5) for r in config.routes))
        print(f"monitoring route {config.routes[0].name} every {DEMO_INTERVAL_S:g}s; Ctrl-C stops\n", flush=True)
        return await headless.run(config)
    finally:
        await lab.aclose()


def main(args: argparse.Namespace) -> int:
    from flowtui.lab.common import check_hops

    check_hops(args.hops)  # before anything starts
    keep = args.dir is not None
    lab_dir = Path(args.dir).resolve() if keep else Path(tempfile.mkdtemp(prefix="flowtui-demo-"))
    try:
        return asyncio.run(_demo(lab_dir, args.hops))
    except KeyboardInterrupt:
        return 0
    finally:
        if not keep:
            shutil.rmtree(lab_dir, ignore_errors=True)
        print("demo stopped", file=sys.stderr)
