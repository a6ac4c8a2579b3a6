"""``flowtui report`` and ``flowtui export``: history from the monitor's database.

Shared here: reading ``--since``/``--until``/``--route``/``-o`` into one
line of error each (exit 2), and opening the database read-mostly (a
missing database is an error, not a new empty file).
"""

from __future__ import annotations

import argparse
import difflib
import os
import stat
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterator

from flowtui.core.errors import UserError


def add_window_args(p: argparse.ArgumentParser, since_default: str) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the flowtui config (TOML)")
    p.add_argument("--since", default=since_default, metavar="WHEN",
                   help=f'a duration back from now ("7d", "12h", "1y") or a UTC date/time '
                        f'("2026-11-01", "2026-11-01T12:00Z"); default "{since_default}"')
    p.add_argument("--until", metavar="WHEN", help="end of the window, same forms (default: now)")
    p.add_argument("--route", metavar="NAME", action="append", help="only this route (may be repeated)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


def parse_when(text: str, now: float, flag: str) -> float:
    """A duration back from ``now`` or an absolute time (naive means UTC)."""
    from flowtui.core.config import parse_long_duration

    try:
        return now - parse_long_duration(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise UserError(f'{flag}: expected a duration such as "7d" or a date such as "2026-11-01" '
                        f'or "2026-11-01T12:00Z", got "{text}"', code=2) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def window(args: argparse.Namespace, now: float) -> tuple[float, float]:
    since = parse_when(args.since, now, "--since")
    until = now if args.until is None else parse_when(args.until, now, "--until")
    if until <= since:
        if args.until is None:
            raise UserError(f"--since: {args.since} is not in the past (the window ends now)", code=2)
        raise UserError(f"--until: the window ends ({args.until}) before it starts ({args.since})", code=2)
    return since, until


@contextmanager
def opened(config_path: str) -> Iterator[tuple[Any, Any]]:
    """(config, store) for a database that must exist already."""
    from flowtui.core.config import load_config
    from flowtui.core.storage import open_store

    config = load_config(config_path)
    db = config.monitor.database
    if not os.path.isfile(db):
        raise UserError(f"{config_path}: monitor.database: no such file {db} (has the monitor run yet?)", code=2)
    store = open_store(config.path, db)
    try:
        yield config, store
    finally:
        store.close()


def pick_routes(wanted: list[str] | None, config: Any, store: Any) -> list[str]:
    known = sorted({r.name for r in config.routes} | {r.name for r in store.routes()})
    if not wanted:
        return known
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (routes: {', '.join(known) or 'none'})"
            raise UserError(f'--route: no route named "{name}" in {config.monitor.database}{hint}', code=2)
    return list(dict.fromkeys(wanted))


@contextmanager
def output(path: str | None, newline: str | None = None) -> Iterator[IO[str]]:
    """stdout, or the file ``path``.

    A regular file (new or existing) is written to a temporary file beside it and
    renamed into place when done, so a failed run leaves the old one whole; an
    existing file keeps its mode, and one its owner cannot write is refused. A
    symlink is followed (its target is written, the link stays). Anything else that
    exists (a device such as /dev/stdout, a FIFO) is written in place, never replaced.
    """
    if path is None or path == "-":
        yield sys.stdout
        return
    if not path.strip():
        raise UserError("-o: expected a file name, got an empty one", code=2)
    target = Path(os.path.realpath(path))  # a symlink: write where it points
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UserError(f"-o: cannot write {path}: {exc.strerror or exc}", code=2) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UserError(f"-o: {path} is a directory; give a file name", code=2)
    if st is not None and not stat.S_ISREG(st.st_mode):  # a device or a FIFO: write into it
        try:
            with open(target, "w", encoding="utf-8", newline=newline) as f:
                yield f
        except OSError as exc:
            raise UserError(f"-o: cannot write {path}: {exc.strerror or exc}", code=2) from None
        return
    if st is not None and (not os.access(target, os.W_OK) or not st.st_mode & 0o222):  # root passes access()
        raise UserError(f"-o: {path} is read-only; remove it or choose another name", code=2)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        f = open(tmp, "w", encoding="utf-8", newline=newline)
    except OSError as exc:
        raise UserError(f"-o: cannot write {path}: {exc.strerror or exc}", code=2) from None
    try:
        with f:
            yield f
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.replace(tmp, target)
    except OSError as exc:
        raise UserError(f"-o: cannot write {path}: {exc.strerror or exc}", code=2) from None
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- report


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    from flowtui.report import FORMATS

    p = sub.add_parser(
        "report",
        help="per-route report over a window (table, json, csv, html)",
        description="Per route: probes sent, delivered %, lost, late, bounced, junk; p50/p90/p99/max of "
        "submit, transit and total; the slowest hop; TLS coverage; alerts; a trend. Raw rows within the "
        "raw retention, hourly/daily roll-ups beyond it (percentiles then within 1%).",
    )
    add_window_args(p, "7d")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    p.add_argument("--dmarc", action="store_true",
                   help="add the DMARC aggregate reports of the window (per domain: pass share, sources)")


def report_main(args: argparse.Namespace) -> int:
    from flowtui.report import build_report, render

    now = time.time()
    since, until = window(args, now)
    with opened(args.config) as (config, store):
        routes = pick_routes(args.route, config, store)

        def read(conn):
            report = build_report(conn, routes, since, until, now, config.monitor.retention_s)
            if getattr(args, "dmarc", False):
                from flowtui.dmarcreport import dmarc_section

                report["sections"].append(dmarc_section(conn, since, until, now))
            return report

        report = store.read(read)
    text = render(report, args.format)
    with output(args.output) as f:
        f.write(text)
    return 0


# --------------------------------------------------------------------------- export


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export raw probes and hops (csv or jsonl) for audits",
        description="Streams the raw probes (and their hops) sent within the window, oldest first. "
        "jsonl: one probe per line with its hops; csv: one row per hop (a probe without hops: one row "
        "with empty hop columns). Only what the database holds: never a password.",
    )
    add_window_args(p, "30d")
    p.add_argument("--format", choices=("csv", "jsonl"), default="jsonl", help="output format (default jsonl)")


def export_main(args: argparse.Namespace) -> int:
    from flowtui.export import write_export

    now = time.time()
    since, until = window(args, now)
    with opened(args.config) as (config, store):
        routes = pick_routes(args.route, config, store) if args.route else None
        with output(args.output, newline="" if args.format == "csv" else None) as f:
            n = store.read(lambda conn: write_export(conn, f, args.format, since, until, routes))
    if args.output not in (None, "-"):
        print(f"exported {n} probes to {args.output}", file=sys.stderr)
    return 0
