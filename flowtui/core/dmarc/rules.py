"""DMARC alert rules evaluated over the stored reports (run with ``Store.read``).

``conditions(rule, conn, now)`` maps each subject whose condition holds to
(severity, message); ``AlertBook.observe_dmarc`` turns that into fired and
resolved alerts. Subjects: a domain (pass rate, failing volume) or
"domain source-ip" (a new source).
"""

from __future__ import annotations

import sqlite3

from flowtui.core.headers import safe_text
from flowtui.core.model import AlertRule

DEFAULT_VOLUME = {"dmarc_pass_rate": 10, "dmarc_new_source": 10, "dmarc_failing": 10}
SEVERITY = "warn"


def _subject(text: str) -> str:
    return safe_text(text).replace("|", "/")[:200]


def conditions(rule: AlertRule, conn: sqlite3.Connection, now: float) -> dict[str, tuple[str, str]]:
    since = int(now - rule.window_s)
    volume = rule.volume if rule.volume is not None else DEFAULT_VOLUME[rule.kind]
    sev = rule.severity or SEVERITY
    where, args = "end >= ?", [since]
    if rule.domains:
        where += f" AND domain IN ({','.join('?' * len(rule.domains))})"
        args += list(rule.domains)
    out: dict[str, tuple[str, str]] = {}
    if rule.kind in ("dmarc_pass_rate", "dmarc_failing"):
        for domain, total, passed in conn.execute(
            f"SELECT domain, SUM(count), SUM(count * dmarc_pass) FROM dmarc_records WHERE {where} GROUP BY domain",
            args,
        ):
            total, passed = total or 0, passed or 0
            d = _subject(domain)
            if rule.kind == "dmarc_pass_rate":
                rate = passed / total if total else 1.0
                if total >= volume and rate < rule.pass_rate:
                    out[d] = (sev, f"DMARC pass rate of {d} is {rate:.0%} ({passed} of {total} messages) "
                                   f"< {rule.pass_rate:.0%}")
            elif total - passed > volume:
                out[d] = (sev, f"{total - passed} messages as {d} failed DMARC (> {volume})")
        return out
    if rule.kind == "dmarc_new_source":
        for domain, ip, total, failed, first in conn.execute(
            f"SELECT domain, source_ip, SUM(count), SUM(count * (1 - dmarc_pass)),"
            f" (SELECT MIN(r2.begin) FROM dmarc_records r2 WHERE r2.domain = r.domain AND r2.source_ip = r.source_ip)"
            f" FROM dmarc_records r WHERE {where} GROUP BY domain, source_ip", args,
        ):
            if first >= since and total > volume:
                d, s = _subject(domain), _subject(ip)
                out[f"{d} {s}"] = (sev, f"new source {s} sent {total} messages as {d} ({failed} failed DMARC)")
        return out
    raise AssertionError(f"not a dmarc rule: {rule.kind}")
