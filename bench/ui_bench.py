"""ui: the dashboard's start-up time and its CPU cost under 500 busy routes (headless Textual).

First frame: the parent records ``time.time()`` just before it starts a
fresh interpreter (``python bench/ui_bench.py --first-frame T0 DB N``); the
child imports flowtui and Textual, builds a config of N routes in code,
opens the store (pre-filled by the parent with a few probes per route) and
runs ``FlowApp`` headless at 160x48. The app's ``_display`` is wrapped: the
first call for the dashboard screen once its DataTable holds every route's
row is the first full frame (in headless mode Textual composes the frame
but does not serialise it to a terminal). The child also reports the first
frame after the store's history was folded in.

CPU share: in this benchmark's own interpreter, ``FlowApp`` runs headless
with no engine; a task on the same loop publishes one ``ProbeCompleted``
per route per second on the app's ``EventBus`` (spread over the second in
ten batches, results built before the window). CPU share is this process's
CPU time (every thread) over wall time during the window, after a warm-up.
The app's tick (drain the subscription, fold, flush into the table) is timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

SIZE = (160, 48)
N_ROUTES = 500


# ---------------------------------------------------------------- data
def make_config(db: Path, n: int):
    from flowtui.core.model import Config, ImapSettings, MonitorSettings, Route, Security, ServerSettings

    smtp = ServerSettings(host="127.0.0.1", port=2525, security=Security.NONE)  # placeholders: nothing connects
    imap = ImapSettings(host="127.0.0.1", port=1143, security=Security.NONE)
    routes = tuple(
        Route(name=f"site{i:03d}-to-mbx{i % 50:02d}", mail_from="probe@example.test", rcpt_to="probe@example.test",
              smtp=smtp, imap=imap, interval_s=1.0, timeout_s=120.0)
        for i in range(n)
    )
    return Config(path=str(db.parent / "ui-bench.toml"), monitor=MonitorSettings(database=str(db)), routes=routes)


_HOP_NAMES = ("hop1.bench.test", "hop2.bench.test", "mailbox.bench.test")


def _hops(sent: float, total: float):
    from flowtui.core.model import Hop

    out, prev = [], None
    t = datetime.fromtimestamp(int(sent), timezone.utc)
    for i, by in enumerate(_HOP_NAMES):
        d = 0.0 if i == 0 else total / 3
        t = t + timedelta(seconds=d)
        out.append(Hop(index=i, from_host=prev or "client.bench.test", from_ip="127.0.0.1", by_host=by,
                       with_protocol="ESMTPS" if i < 2 else "LMTP", tls=i < 2, timestamp=t,
                       delay_s=None if i == 0 else d,
                       raw=f"from {prev or 'client.bench.test'} ([127.0.0.1]) by {by} with ESMTP id B{i}; "
                           f"{t:%a, %d %b %Y %H:%M:%S} +0000"))
        prev = by
    return tuple(out)


def make_result(route: str, seq: int, sent: float):
    """A delivered probe; every 97th is lost, so health and the alert log move too."""
    from flowtui.core.model import ProbeResult, ProbeState

    total = 0.6 + ((seq * 37 + sum(map(ord, route))) % 400) / 100  # 0.6 .. 4.6 s
    if seq % 97 == 0:
        return ProbeResult(route=route, probe_id=f"{route}-{seq}", seq=seq, state=ProbeState.LOST, sent_at=sent,
                           submit_s=0.2, error="not seen within the timeout")
    return ProbeResult(
        route=route, probe_id=f"{route}-{seq}", seq=seq, state=ProbeState.DELIVERED, sent_at=sent,
        submit_s=0.2, transit_s=total - 0.2, total_s=total, detected_at=sent + total, folder="INBOX",
        phases=(("connect", 0.01), ("tls", 0.05), ("data_accepted", 0.2), ("detected", total)),
        hops=_hops(sent, total), content_ok=True,
    )


def fill_store(config, per_route: int) -> None:
    from flowtui.core.storage import Store

    now = time.time()
    with Store(config.monitor.database) as store:
        for k in range(per_route):
            for r in config.routes:
                store.write_result(make_result(r.name, k + 1, now - 60 * (per_route - k)))
        store.flush_sync()


# ---------------------------------------------------------------- first frame (child)
def _say(**kw) -> None:
    """One partial result on stdout: the parent keeps what arrived if it has to kill this process."""
    print(json.dumps(kw), flush=True)


def first_frame_child(t0: float, db: str, n: int) -> None:
    from flowtui.core.storage import Store
    from flowtui.ui.app import DashboardScreen, FlowApp
    from textual.widgets import DataTable

    _say(import_s=time.time() - t0)
    config = make_config(Path(db), n)
    store = Store(config.monitor.database)
    app = FlowApp(config, store)
    marks: dict[str, float] = {}
    display = app._display

    def watched(screen, renderable):
        display(screen, renderable)
        if renderable is None or not isinstance(screen, DashboardScreen) or "history" in marks:
            return
        try:
            rows = screen.query_one("#routes", DataTable).row_count
        except Exception:
            return
        if rows == n:
            if "rows" not in marks:
                marks["rows"] = time.time()
                _say(rows_s=marks["rows"] - t0)
            if app.history_loaded and not app.dirty:
                marks["history"] = time.time()
                _say(history_s=marks["history"] - t0)

    app._display = watched  # type: ignore[method-assign]

    async def main() -> None:
        async with app.run_test(headless=True, size=SIZE) as pilot:
            while "history" not in marks:
                await asyncio.sleep(0.005)
            shot = app.export_screenshot()
            _say(shown=sum(r.name in shot for r in config.routes))
            await app.shutdown()
            await pilot.exit(0)

    asyncio.run(main())


def _child(args: list[str], timeout: float) -> tuple[dict, bool]:
    """Run this file with ``args``; merge its JSON lines. True if it had to be killed."""
    try:
        out = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                             timeout=timeout).stdout
        killed = False
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        killed = True
    got: dict = {}
    for text in out.splitlines():
        try:
            got.update(json.loads(text))
        except ValueError:
            pass
    return got, killed


def first_frame(quick: bool) -> list[dict]:
    from common import at_most, line, log

    per_route = 3 if quick else 30
    runs, limit = (1, 3.5) if quick else (3, 60.0)
    with tempfile.TemporaryDirectory(prefix="flowtui-bench-ui-") as d:
        db = Path(d) / "ui.db"
        fill_store(make_config(db, N_ROUTES), per_route)
        got = []
        for _ in range(runs):
            t0 = time.time()
            g, killed = _child(["--first-frame", repr(t0), str(db), str(N_ROUTES)], limit)
            got.append(g)
    log(f"ui: first frames {got}")

    def med(key):
        vals = [g.get(key) for g in got]
        return None if None in vals else round(sorted(vals)[len(vals) // 2], 3)

    imp, shown = med("import_s"), [g.get("shown") for g in got]
    note = (f"median of {runs} fresh interpreter(s): launch (parent's time.time()) to the first composed frame "
            f"of the dashboard with all {N_ROUTES} rows, headless {SIZE[0]}x{SIZE[1]}"
            + (f"; imports alone {imp:.2f} s" if imp is not None else ""))
    hist = med("history_s")
    note_h = f"same runs, first frame after {per_route} stored probes per route were read and folded in"
    if hist is None:
        note_h += (f"; not reached within {limit:g} s (process killed): DataTable.update_cell(update_width=True) "
                   "re-measures a whole column for every cell that gets narrower, O(rows) per cell")
    elif None not in shown:
        note_h += f"; {min(shown)} route names on screen"
    return [at_most("ui_first_frame_s", med("rows_s"), "s", 1, note), line("ui_history_frame_s", hist, "s", note=note_h)]


# ---------------------------------------------------------------- CPU share (child)
def cpu_child(window_s: float, warm_s: float, d: str) -> None:
    """Runs the app under load; a watchdog thread reports after the window even if the loop is stuck."""
    import threading

    from common import cpu_s, pct
    from flowtui.core.events import EventBus, ProbeCompleted
    from flowtui.core.storage import Store
    from flowtui.ui.app import FlowApp

    config = make_config(Path(d) / "ui.db", N_ROUTES)
    store = Store(config.monitor.database)
    bus = EventBus()
    app = FlowApp(config, store, bus=bus)
    ticks: list[float] = []
    state = {"measuring": False}
    tick = app._tick

    def timed_tick() -> None:
        t = time.perf_counter()
        tick()
        if state["measuring"]:
            ticks.append(time.perf_counter() - t)

    app._tick = timed_tick  # type: ignore[method-assign]
    seconds = int(warm_s + window_s) + 3
    names = [r.name for r in config.routes]
    start = time.time() + 0.5
    # every result built before the window: the publisher only publishes
    planned = [[ProbeCompleted(make_result(name, s + 1, start + s + (i % 10) / 10)) for i, name in enumerate(names)]
               for s in range(seconds)]
    published = [0]

    def watchdog() -> None:
        time.sleep(0.5 + warm_s)
        c0, w0 = cpu_s(), time.monotonic()
        state["measuring"] = True
        time.sleep(window_s)
        c1, w1 = cpu_s(), time.monotonic()
        done = list(ticks)
        sub = app._sub
        _say(share=(c1 - c0) / (w1 - w0), wall=w1 - w0, ticks=len(done), p50=pct(done, 50), p95=pct(done, 95),
             max=max(done, default=None), dropped=sub.dropped if sub is not None else None,
             published=published[0], history=app.history_loaded)
        os._exit(0)  # the loop may be stuck in a long call: do not wait for it

    async def main() -> None:
        threading.Thread(target=watchdog, daemon=True).start()  # from the app's start: the loop may never idle
        async with app.run_test(headless=True, size=SIZE):
            loop = asyncio.get_running_loop()
            t_mono = loop.time() + max(0.0, start - time.time())
            for s in range(seconds):
                for b in range(10):
                    await asyncio.sleep(max(0.0, t_mono + s + b / 10 - loop.time()))
                    for ev in planned[s][b * 50:(b + 1) * 50]:
                        bus.publish(ev)
                        published[0] += 1
            await asyncio.sleep(60)

    asyncio.run(main())


def cpu_share(quick: bool) -> list[dict]:
    from common import at_most, line, log

    window, warm = (8.0, 0.5) if quick else (20.0, 3.0)
    with tempfile.TemporaryDirectory(prefix="flowtui-bench-ui-") as d:  # the child ends with os._exit
        got, killed = _child(["--cpu", str(window), str(warm), d], window + warm + 15)
    log(f"ui: CPU {got}")
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    share = got.get("share")
    note = (f"{N_ROUTES} routes, one ProbeCompleted each per second on the app's EventBus (no engine), headless "
            f"{SIZE[0]}x{SIZE[1]}, {got.get('wall', 0):.0f} s after a {warm:g} s warm-up; process CPU / wall, "
            f"one core = 100 %; {got.get('published')} events published in all"
            + (f"; {got['dropped']} dropped by the bus (the UI fell behind)" if got.get("dropped") else "")
            + ("; the store's history was never folded in (the loop stayed busy)" if got.get("history") is False else ""))
    want = int(window * 4)
    return [
        at_most("ui_cpu_share_500_routes", None if share is None else round(share * 100, 1), "% of one core", 25,
                note),
        line("ui_tick_p95", ms(got.get("p95")), "ms",
             note=f"{got.get('ticks')} ticks ran in the window (4 Hz would be {want}): drain, fold, flush into the "
                  f"table; Textual's repaint follows outside it; p50 {ms(got.get('p50'))} ms, "
                  f"max {ms(got.get('max'))} ms"),
    ]


def run(quick: bool) -> list[dict]:
    return first_frame(quick) + cpu_share(quick)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--first-frame":
        first_frame_child(float(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) >= 2 and sys.argv[1] == "--cpu":
        cpu_child(float(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
    else:
        for item in run("--quick" in sys.argv):
            print(json.dumps(item), flush=True)
