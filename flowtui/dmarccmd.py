"""``flowtui dmarc import FILE...`` and ``flowtui dmarc report``: DMARC aggregate reports by hand."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any

from flowtui.core.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dmarc",
        help="DMARC aggregate reports: import files, show who sends as your domains",
        description="Import DMARC aggregate (rua) reports into the monitor's database and "
        "summarise them. The running monitor collects them itself from [dmarc].",
    )
    dsub = p.add_subparsers(dest="dmarc_cmd", metavar="ACTION", required=True)
    imp = dsub.add_parser(
        "import", help="import report files (.xml, .xml.gz, .zip, or mails with them)",
        description="Imports each file; prints one line per report: imported, duplicate or error. "
        "Exit 1 when any file failed (the others are imported all the same).",
    )
    imp.add_argument("-c", "--config", metavar="FILE", help="the flowtui config (its database is used)")
    imp.add_argument("files", nargs="+", metavar="FILE")
    rep = dsub.add_parser(
        "report", help="summarise the stored reports per domain",
        description="Per domain: the DMARC pass share over time, top sources, new sources and "
        "sources failing alignment.",
    )
    rep.add_argument("-c", "--config", metavar="FILE", help="the flowtui config")
    rep.add_argument("--since", default="30d", metavar="DURATION", help='reports ending within this long ago (default "30d")')
    rep.add_argument("--format", choices=("table", "json"), default="table")
    rep.add_argument("--domain", action="append", default=[], metavar="DOMAIN", help="only this domain (repeatable)")
    rep.add_argument("--top", type=int, default=10, metavar="N", help="sources per list (default 10)")
    rep.add_argument("--rdns", action="store_true",
                     help="look up reverse DNS of sources not in the cache first ([dns] nameservers when set)")


def _open(args: argparse.Namespace):
    from flowtui.cli import NO_CONFIG, find_config
    from flowtui.core.config import load_config
    from flowtui.core.storage import open_store

    path = find_config(args.config)
    if path is None:
        raise UserError(NO_CONFIG.removeprefix("flowtui: "), code=2)
    config = load_config(path)
    return config, open_store(config.path, config.monitor.database)


def main(args: argparse.Namespace) -> int:
    if args.dmarc_cmd == "import":
        return _import(args)
    return _report(args)


def _import(args: argparse.Namespace) -> int:
    from flowtui.core.dmarc.importer import import_files

    _config, store = _open(args)
    with store:
        outcomes = import_files(store, args.files)
    for o in outcomes:
        print(o.line(), file=sys.stderr if o.status == "error" else sys.stdout, flush=True)
    counts = {s: sum(1 for o in outcomes if o.status == s) for s in ("imported", "duplicate", "error")}
    print(f"{counts['imported']} imported, {counts['duplicate']} duplicate, {counts['error']} failed")
    return 1 if counts["error"] else 0


def _report(args: argparse.Namespace) -> int:
    from flowtui.core.config import parse_duration
    from flowtui.core.dmarc.summary import dmarc_summary

    try:
        since_s = parse_duration(args.since)
    except ValueError as exc:
        raise UserError(f"--since: {exc}", code=2) from None
    if args.top < 1:
        raise UserError(f"--top: expected 1 or more, got {args.top}", code=2)
    config, store = _open(args)
    with store:
        if args.rdns:
            from flowtui.core.dmarc.rdns import dns_lookup, resolve_missing

            pending = store.read(lambda conn: dmarc_summary(conn, since_s=since_s, top=args.top))["unresolved"]
            resolve_missing(store, pending, dns_lookup(config.dns.nameservers, config.dns.timeout_s))
        summary = store.read(lambda conn: dmarc_summary(
            conn, since_s=since_s, domains=tuple(d.lower().rstrip(".") for d in args.domain), top=args.top))
    if args.format == "json":
        print(json.dumps(summary, indent=1))
    else:
        print(format_table(summary))
    return 0


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _stamp(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")


def format_table(summary: dict[str, Any]) -> str:
    """The summary as plain text; reporter-supplied strings go through plain_text."""
    from flowtui.core.dmarc.summary import pass_spark
    from flowtui.core.headers import plain_text

    lines = [f"DMARC reports {_stamp(summary['since'])} .. {_stamp(summary['until'])}: {summary['reports']} reports"]
    if not summary["domains"]:
        lines.append("no reports in this period")
    for d in summary["domains"]:
        pol = " ".join(f"{k}={plain_text(v)}" for k, v in d["policy"].items() if v)
        lines.append("")
        lines.append(f"{plain_text(d['domain'])}  {pol}")
        lines.append(f"  {d['messages']} messages, {d['pass']} pass, {d['fail']} fail: pass {_pct(d['pass_rate'])}"
                     f"  per day |{pass_spark(d['series'])}|")
        for title, key in (("top sources", "top_sources"), ("new sources", "new_sources"),
                           ("failing alignment", "failing_sources")):
            rows = d[key]
            lines.append(f"  {title}:" + ("" if rows else " none"))
            for s in rows:
                name = plain_text(s.get("rdns") or "-")
                extra = ""
                if key == "new_sources":
                    extra = f"  first seen {_stamp(s['first_seen'])}"
                if key == "failing_sources" and s.get("header_from"):
                    extra = "  from " + ", ".join(plain_text(h) for h in s["header_from"][:3])
                lines.append(f"    {plain_text(s['ip']):<39} {s['messages']:>8} msgs  pass {s['pass']:>7}  "
                             f"fail {s['fail']:>7}  {name}{extra}")
    return "\n".join(lines)
