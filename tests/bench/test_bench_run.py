"""bench/run.py prints well-formed figure lines and its summary line (no figure thresholds here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_lag_prints_json_lines_and_summary():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "lag"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"(\d+) of (\d+) targets met", lines[-1]), lines[-1]
    met, total = map(int, re.findall(r"\d+", lines[-1]))
    items = [json.loads(text) for text in lines[:-1]]
    for item in items:
        assert {"name", "value", "unit", "target", "ok"} <= item.keys(), item
        assert item["ok"] in (True, False, None)
        assert (item["target"] is None) == (item["ok"] is None) or item["value"] is None, item
    names = {i["name"] for i in items}
    assert {"lag_idle_p50", "lag_idle_p99"} <= names
    assert not any(i["name"] == "lag" and i["value"] is None for i in items), "the lag benchmark failed"
    with_target = [i for i in items if i["target"] is not None]
    assert total == len(with_target) and met == sum(i["ok"] is True for i in with_target)
