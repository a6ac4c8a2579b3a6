"""``flowtui probe``: one probe per route, as a Nagios / Icinga / Checkmk check.

Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; one line with perfdata.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
import sys

from flowtui.core.errors import UserError
from flowtui.core.headers import plain_text
from flowtui.core.model import ProbeResult, ProbeState, Route

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="send one probe per route and wait for it (Nagios-plugin output and exit code)",
        description="Sends one probe along each route (or ROUTE), waits for it, prints one "
        "Nagios-plugin line with perfdata. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the flowtui config (TOML)")
    p.add_argument("route", nargs="?", metavar="ROUTE", help="only this route")
    p.add_argument("--timeout", metavar="DURATION", help="wait at most this long (default: the route's timeout)")


def verdict(route: Route, r: ProbeResult, timeout: float | None = None) -> tuple[int, str]:
    if r.state is ProbeState.DELIVERED:
        t = r.total_s or 0.0
        code = CRITICAL if t >= route.crit_s else WARNING if t >= route.warn_s else OK
        return code, f"{route.name}: delivered in {t:.2f}s through {len(r.hops)} Received hops"
    if r.state is ProbeState.SEND_FAILED:
        return CRITICAL, f"{route.name}: send failed at {r.error_phase}: {plain_text(r.error)}"
    if r.state is ProbeState.LOST:
        return CRITICAL, f"{route.name}: not delivered within {timeout or route.timeout_s:g}s"
    if r.state is ProbeState.JUNK:
        return WARNING, f"{route.name}: delivered to junk folder {plain_text(r.folder)}"
    if r.state is ProbeState.LATE:
        return WARNING, f"{route.name}: delivered late ({(r.total_s or 0):.2f}s)"
    if r.state is ProbeState.CORRUPTED:
        return CRITICAL, f"{route.name}: content changed in transit"
    return CRITICAL, f"{route.name}: {r.state.value}"


def perfdata(route: Route, r: ProbeResult) -> str:
    def v(x: float | None) -> str:
        return "U" if x is None else f"{x:.3f}s"

    name = route.name.replace("'", "")
    return (
        f"'{name}_submit'={v(r.submit_s)} '{name}_transit'={v(r.transit_s)} "
        f"'{name}_total'={v(r.total_s)};{route.warn_s:g};{route.crit_s:g} '{name}_hops'={len(r.hops)}"
    )


async def _probe_all(config, routes, timeout: float | None) -> tuple[list[tuple[Route, ProbeResult]], dict[str, str]]:
    from flowtui.core.engine import Engine
    from flowtui.core.events import EventBus
    from flowtui.core.storage import open_store

    store = open_store(config.path, config.monitor.database)
    engine = Engine(config, store, EventBus())
    try:
        await engine.start(schedule=False)
        await engine.wait_ready(timeout=min(r.imap.timeout_s for r in routes))
        # a mailbox that refuses the login cannot see any probe: say so at once
        refused = {
            r.name: engine.route_watcher[r.name].detail
            for r in routes
            if engine.route_watcher[r.name].state == "down"
        }
        todo = [r for r in routes if r.name not in refused]
        results = await asyncio.gather(*(engine.probe_once(r, timeout) for r in todo))
        return list(zip(todo, results)), refused
    finally:
        await engine.stop()
        store.close()


async def _bounded(coro, timeout: float | None):
    """The check within about twice --timeout (connect, send and wait each take up to it)."""
    if timeout is None:
        return await coro
    try:
        async with asyncio.timeout(2 * timeout + 5):
            return await coro
    except TimeoutError:
        raise UserError(f"the check did not finish within {2 * timeout + 5:g}s (--timeout {timeout:g}s)") from None


def main(args: argparse.Namespace) -> int:
    try:
        from flowtui.core.config import load_config, parse_duration

        config = load_config(args.config)
        routes = [r for r in config.routes if args.route in (None, r.name)]
        if not routes:
            raise UserError(f"{args.config}: no route named {args.route!r}")
        timeout = None
        if args.timeout is not None:
            try:
                timeout = parse_duration(args.timeout)
            except ValueError as exc:
                raise UserError(f"--timeout: {exc}")
            if timeout <= 0:
                raise UserError(f"--timeout: must be more than zero, got {args.timeout!r}")
    except UserError as exc:  # Nagios wants UNKNOWN for a check that cannot run
        print(f"FLOWTUI UNKNOWN - {exc}")
        return UNKNOWN
    if timeout is not None:  # no single SMTP/IMAP step may wait longer than the whole check
        routes = [replace(r, smtp=replace(r.smtp, timeout_s=min(r.smtp.timeout_s, timeout)),
                          imap=replace(r.imap, timeout_s=min(r.imap.timeout_s, timeout))) for r in routes]
        config = replace(config, routes=tuple(routes))
    try:
        outcome, refused = asyncio.run(_bounded(_probe_all(config, routes, timeout), timeout))
    except UserError as exc:
        print(f"FLOWTUI UNKNOWN - {exc}")
        return UNKNOWN
    code = CRITICAL if refused else OK
    texts = [f"{name}: mailbox {plain_text(detail)}" for name, detail in refused.items()]
    perf = []
    for route, r in outcome:
        c, text = verdict(route, r, timeout)
        code = max(code, c)
        texts.append(text)
        perf.append(perfdata(route, r))
    print(f"FLOWTUI {NAMES[code]} - {'; '.join(texts)}" + (f" | {' '.join(perf)}" if perf else ""))
    sys.stdout.flush()
    return code
