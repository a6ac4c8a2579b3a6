"""Helpers shared by the benchmarks: figure lines, percentiles, CPU and memory readings."""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from flowtui.core.stats import percentile


def line(name: str, value, unit: str, target=None, ok=None, note: str | None = None) -> dict:
    """One figure; ``ok`` is computed by the caller (None where there is no target)."""
    out = {"name": name, "value": value, "unit": unit, "target": target, "ok": ok}
    if note:
        out["note"] = note
    return out


def at_most(name: str, value, unit: str, limit, note: str | None = None) -> dict:
    ok = None if value is None else bool(value <= limit)
    return line(name, value, unit, f"<= {limit}", ok, note)


def emit(item: dict) -> None:
    print(json.dumps(item), flush=True)


def pct(values, p):
    v = percentile(values, p)
    return None if v is None else round(v, 6)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def cpu_s() -> float:
    """CPU seconds (user + system) this process has used so far, every thread."""
    t = os.times()
    return t.user + t.system


def peak_rss_mb() -> float:
    """Peak resident set of this process in MB (Linux ru_maxrss is in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
