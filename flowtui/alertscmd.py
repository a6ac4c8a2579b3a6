"""``flowtui alerts``: the alert history from the monitor's database."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone

from flowtui.core.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alerts",
        help="list the alert history (fired and resolved)",
        description="Lists alerts from the config's database, newest first. Exit 0; "
        "1 when --firing finds alerts still firing.",
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the flowtui config (TOML)")
    p.add_argument("--json", action="store_true", help="one JSON array of alerts")
    p.add_argument("--since", default="24h", metavar="DURATION", help='fired within this long ago (default "24h"; "0s": all)')
    p.add_argument("--firing", action="store_true", help="only alerts that are still firing")
    p.add_argument("--route", metavar="NAME", help="only this route's alerts")
    p.add_argument("--ack", metavar="ID", help="acknowledge the firing alert ID (no more notifications for it)")


def _stamp(epoch: float | None) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(args: argparse.Namespace) -> int:
    from flowtui.core.config import load_config, parse_duration
    from flowtui.core.headers import plain_text
    from flowtui.core.storage import open_store

    try:
        since_s = parse_duration(args.since)
    except ValueError as exc:
        raise UserError(f"--since: {exc}", code=2) from None
    config = load_config(args.config)
    with open_store(config.path, config.monitor.database) as store:
        if args.ack:
            known = [a for a in store.alerts(limit=1_000_000) if a.id == args.ack]
            if not known:
                raise UserError(f"--ack: no alert with id {args.ack!r}", code=2)
            store.ack_alert(args.ack)
            store.flush_sync()
            print(f"acknowledged {args.ack}")
            return 0
        records = store.alerts(state="fired" if args.firing else None, route=args.route, limit=1_000_000)
    if since_s > 0:
        cutoff = time.time() - since_s
        records = [a for a in records if a.fired_at >= cutoff or (a.resolved_at or 0) >= cutoff or a.state == "fired"]
    if args.json:
        print(json.dumps([
            {"id": a.id, "route": a.route, "rule": a.rule, "severity": a.severity, "state": a.state,
             "fired_at": a.fired_at, "resolved_at": a.resolved_at, "message": a.message, "acked_at": a.acked_at}
            for a in records
        ], indent=1))
    else:
        if not records:
            print("no alerts" + (" firing" if args.firing else f" in the last {args.since}"))
        for a in records:
            ack = " (acked)" if a.acked_at else ""
            end = f" resolved {_stamp(a.resolved_at)}" if a.state == "resolved" else " FIRING"
            route = f" {plain_text(a.route)}" if a.route else ""
            print(f"{_stamp(a.fired_at)} {a.severity.upper():4}{route} {plain_text(a.rule)}:{end}{ack} "
                  f"- {plain_text(a.message)} [{plain_text(a.id)}]")
    return 1 if args.firing and records else 0
