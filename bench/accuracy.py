"""accuracy: flowtui's total against the truth through the real Postfix + Dovecot lab.

Hop 2 holds mail for a known time (3 s) and is then released. The truth is
read from the mailbox itself: a thread lists the Maildir every millisecond and
notes the instant each probe's file appears (Dovecot writes it to tmp/ and
renames it into new/, so a listed file is whole). The engine, that thread and
this script share one process and one monotonic clock.

- error: flowtui's total (send -> arrival as flowtui reports it) minus the
  truth. Dovecot holds its IDLE pushes about 0.5 s by design; flowtui
  measures that delay per mailbox (``push_delay_s``, an own APPEND timed
  through IDLE) and takes it off arrivals it saw through a push.
- uncorrected error: the same with the push delay put back, i.e. what a
  monitor that takes the push instant as the arrival would report.
- known-delay error: flowtui's total minus (release instant - send instant +
  the chain's normal delivery time measured before), as the issue describes it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import at_most, line, log

HOLD_S = 3.0


def _skip(why: str) -> list[dict]:
    return [line("accuracy", None, "ms", "< 100", None, note=f"skipped: {why}")]


async def _measure(lab_dir: Path, normals: int) -> dict:
    from dataclasses import replace

    from flowtui.core.config import load_config
    from flowtui.core.engine import Engine
    from flowtui.core.events import EventBus
    from flowtui.core.storage import Store
    from flowtui.lab import postfix

    config = load_config(lab_dir / "lab.toml")
    config = replace(config, monitor=replace(config.monitor, database=str(lab_dir / "acc.db")))
    route = config.routes[0]
    store = Store(config.monitor.database)
    engine = Engine(config, store, EventBus())
    from flowtui.lab.maildir_clock import MaildirClock

    clock = MaildirClock(lab_dir / "mail")
    out: dict = {"normal": []}

    async def probe():
        p = await engine.send(route)
        async with asyncio.timeout(60):
            await p.done.wait()
        for _ in range(100):  # the clock thread notes it within a few ms
            if p.result.message_id in clock.seen:
                break
            await asyncio.sleep(0.01)
        return p, clock.seen.get(p.result.message_id)

    try:
        await engine.start(schedule=False)
        await engine.wait_ready(20)
        out["push_delay"] = engine.route_watcher[route.name].push_delay_s
        await engine.probe_once(route, 30)  # warm-up: the Maildir exists now
        clock.start()
        await asyncio.sleep(0.2)
        for _ in range(normals):
            p, landed = await probe()
            if landed is not None and p.result.total_s is not None:
                out["normal"].append((p.result.total_s, landed - p.t0_mono, p.result.detect_uncertainty_s))
        await asyncio.to_thread(postfix.hold, str(lab_dir), 2)
        p = await engine.send(route)
        await asyncio.sleep(HOLD_S - (time.monotonic() - p.t0_mono))
        await asyncio.to_thread(postfix.release, str(lab_dir), 2)
        released = time.monotonic()
        async with asyncio.timeout(60):
            await p.done.wait()
        for _ in range(100):
            if p.result.message_id in clock.seen:
                break
            await asyncio.sleep(0.01)
        out["held"] = (p.result.total_s, clock.seen.get(p.result.message_id), p.t0_mono, released, p.result.state,
                       p.result.detect_uncertainty_s)
    finally:
        clock.stop.set()
        await engine.stop()
        store.close()
    return out


def _correction(uncertainty, push: float) -> float:
    """The push delay flowtui took off: when it saw the probe through an IDLE push
    (its detect uncertainty is then the push delay), else 0."""
    return push if push and uncertainty is not None and abs(uncertainty - push) < 1e-9 else 0.0


def run(quick: bool) -> list[dict]:
    if os.geteuid() != 0:
        return _skip("the Postfix lab needs root")
    if not (shutil.which("postfix") or os.path.exists("/usr/sbin/postfix")) or not (
        shutil.which("dovecot") or os.path.exists("/usr/sbin/dovecot")
    ):
        return _skip("postfix/dovecot not installed")
    from flowtui.lab import postfix

    d = Path(tempfile.mkdtemp(prefix="flowtui-bench-acc-", dir="/tmp"))
    d.chmod(0o755)
    try:
        t = time.monotonic()
        postfix.up(str(d), 2)
        log(f"accuracy: lab up in {time.monotonic() - t:.1f}s")
        out = asyncio.run(_measure(d, 2 if quick else 10))
    except Exception as exc:  # a lab that cannot start is a reported skip, not a crash
        return _skip(f"{type(exc).__name__}: {exc}")
    finally:
        if (d / "lab.json").exists():
            postfix.down(str(d))
        shutil.rmtree(d, ignore_errors=True)
    log(f"accuracy: {out}")
    total, landed, t0, released, state, unc = out["held"]
    push = out["push_delay"] or 0.0
    if total is None or landed is None:
        return _skip(f"the held probe was not timed (state {state}, landed {landed})")
    true = landed - t0
    normal_true = statistics.median(tr for _, tr, _ in out["normal"]) if out["normal"] else None
    normal_err = [(tot - tr) * 1000 for tot, tr, _ in out["normal"]]
    normal_unc = [(tot + _correction(u, push) - tr) * 1000 for tot, tr, u in out["normal"]]
    err = (total - true) * 1000
    uncorrected = (total + _correction(unc, push) - true) * 1000
    how = "seen through a push: push delay taken off" if _correction(unc, push) else "found by a search, not a push"
    where = (f"hop 2 held {HOLD_S:g} s then released; truth = probe file appearing in the Maildir (1 ms listing); "
             f"true total {true:.3f} s, flowtui total {total:.3f} s, measured push delay {push * 1000:.0f} ms")
    lines = [
        at_most("accuracy_error_ms", round(abs(err), 1), "ms", 100,
                note=f"flowtui's total - truth, signed {err:+.1f} ms; this probe {how}; " + where),
        line("accuracy_error_uncorrected_ms", round(abs(uncorrected), 1), "ms",
             note=f"the push instant taken as the arrival (the push delay put back), signed {uncorrected:+.1f} ms"),
    ]
    if normal_true is not None:
        known = released - t0 + normal_true
        lines.append(line("accuracy_error_vs_known_delay_ms", round((total - known) * 1000, 1), "ms",
                          note=f"flowtui total - (release - send + normal chain time {normal_true * 1000:.0f} ms); "
                               f"release instant = when postfix.release returned (it restarts smtpd, ~0.3 s+), "
                               f"so this formula is looser than the Maildir truth"))
        lines.append(line("accuracy_unheld_error_ms_median", round(statistics.median(normal_err), 1), "ms",
                          note=f"{len(normal_err)} probes without a hold: flowtui total - Maildir truth "
                               f"(min {min(normal_err):.0f}, max {max(normal_err):.0f})"))
        lines.append(line("accuracy_unheld_uncorrected_error_ms_median", round(statistics.median(normal_unc), 1),
                          "ms", note=f"{len(normal_unc)} probes without a hold, push delay put back "
                                     f"(min {min(normal_unc):.0f}, max {max(normal_unc):.0f})"))
    return lines
