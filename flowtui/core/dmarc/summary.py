"""What the stored DMARC reports say: ``dmarc_summary`` (the screen, ``flowtui dmarc
report`` and, later, ``flowtui report --dmarc`` all read this one dict).

Times are the reports' own periods: a record counts in a window when its
report's period ends inside it. Every string in the result comes from a
reporter and is untrusted: callers escape it before it reaches a terminal.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from typing import Any

from flowtui.core.dmarc.store import cached_names

DAY_S = 86400


def _day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")


def dmarc_summary(
    conn: sqlite3.Connection, *, since_s: float = 30 * DAY_S, now: float | None = None,
    domains: tuple[str, ...] = (), top: int = 10, new_s: float = 7 * DAY_S, days: int | None = None,
) -> dict[str, Any]:
    """Per domain over the reports whose period ended in the last ``since_s``:
    messages, pass share, a daily series, top sources, new sources (first seen
    within ``new_s``, never before) and sources failing alignment (neither
    aligned DKIM nor aligned SPF passed). Run it with ``Store.read``."""
    now = time.time() if now is None else now
    since = int(now - since_s)
    where, args = "end >= ?", [since]
    if domains:
        where += f" AND domain IN ({','.join('?' * len(domains))})"
        args += list(domains)
    totals = conn.execute(
        f"SELECT domain, SUM(count), SUM(count * dmarc_pass), COUNT(DISTINCT report), COUNT(DISTINCT source_ip)"
        f" FROM dmarc_records WHERE {where} GROUP BY domain ORDER BY SUM(count) DESC, domain", args,
    ).fetchall()
    n_reports = conn.execute(
        f"SELECT COUNT(*) FROM dmarc_reports WHERE {where}", args).fetchone()[0]
    out_domains = []
    all_ips: set[str] = set()
    for domain, messages, passed, reports, sources in totals:
        messages, passed = messages or 0, passed or 0
        series: dict[str, list[int]] = {}
        for begin, count, ok in conn.execute(
            "SELECT begin, count, dmarc_pass FROM dmarc_records WHERE domain = ? AND end >= ?", (domain, since)
        ):
            cell = series.setdefault(_day(begin), [0, 0])
            cell[0] += count
            cell[1] += count * ok
        n_days = days if days is not None else max(1, min(60, int(since_s // DAY_S)))
        first_day = int(now) - (n_days - 1) * DAY_S
        series_list = []
        for i in range(n_days):
            day = _day(first_day + i * DAY_S)
            m, p = series.get(day, (0, 0))
            series_list.append({"day": day, "messages": m, "pass": p, "pass_rate": (p / m) if m else None})
        rows = conn.execute(
            "SELECT source_ip, SUM(count), SUM(count * dmarc_pass), SUM(count * dkim_aligned),"
            " SUM(count * spf_aligned), MIN(begin) FROM dmarc_records"
            " WHERE domain = ? AND end >= ? GROUP BY source_ip ORDER BY SUM(count) DESC, source_ip",
            (domain, since),
        ).fetchall()
        first_seen = dict(conn.execute(
            "SELECT source_ip, MIN(begin) FROM dmarc_records WHERE domain = ? AND source_ip IN "
            "(SELECT DISTINCT source_ip FROM dmarc_records WHERE domain = ? AND end >= ?) GROUP BY source_ip",
            (domain, domain, since),
        ).fetchall())
        sources = []
        for ip, m, p, dk, sp, _ in rows:
            sources.append({
                "ip": ip, "messages": m, "pass": p, "fail": m - p, "dkim_aligned": dk, "spf_aligned": sp,
                "first_seen": first_seen.get(ip),
            })
            all_ips.add(ip)
        failing_from = {}
        for ip, hf in conn.execute(
            "SELECT source_ip, header_from FROM dmarc_records WHERE domain = ? AND end >= ? AND dmarc_pass = 0"
            " GROUP BY source_ip, header_from", (domain, since),
        ):
            failing_from.setdefault(ip, []).append(hf)
        policy = conn.execute(
            "SELECT p, sp, pct, adkim, aspf, np FROM dmarc_reports WHERE domain = ? ORDER BY end DESC LIMIT 1",
            (domain,),
        ).fetchone()
        new_since = now - new_s
        out_domains.append({
            "domain": domain, "messages": messages, "pass": passed, "fail": messages - passed,
            "pass_rate": passed / messages if messages else None, "reports": reports, "sources": len(sources),
            "policy": dict(zip(("p", "sp", "pct", "adkim", "aspf", "np"), policy)) if policy else {},
            "series": series_list,
            "top_sources": sources[:top],
            "new_sources": [s for s in sources if s["first_seen"] is not None and s["first_seen"] >= new_since][:top],
            "failing_sources": [
                dict(s, header_from=sorted(h for h in failing_from.get(s["ip"], []) if h))
                for s in sorted(sources, key=lambda s: (-s["fail"], s["ip"])) if s["fail"] > 0
            ][:top],
        })
    names = cached_names(conn, sorted(all_ips))
    for d in out_domains:
        for key in ("top_sources", "new_sources", "failing_sources"):
            for s in d[key]:
                s["rdns"] = names.get(s["ip"])
    return {
        "since": since, "until": int(now), "reports": n_reports, "domains": out_domains,
        "unresolved": sorted(ip for ip in all_ips if ip not in names),
    }


SPARK = "▁▂▃▄▅▆▇█"


def pass_spark(series: list[dict[str, Any]]) -> str:
    """One cell per day: the pass share on a fixed 0-100 % scale; '·' for a day without reports."""
    out = []
    for cell in series:
        rate = cell["pass_rate"]
        out.append("·" if rate is None else SPARK[min(len(SPARK) - 1, int(rate * (len(SPARK) - 1) + 0.5))])
    return "".join(out)
