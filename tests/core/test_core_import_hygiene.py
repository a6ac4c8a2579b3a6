"""The store, the event bus and the stats load without textual or rich."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_storage_events_stats_load_without_textual_or_rich() -> None:
    code = (
        "import sys, flowtui.core.storage, flowtui.core.events, flowtui.core.stats;"
        "bad = [m for m in ('textual', 'rich') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": root}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[]"
