"""DMARC tables in the monitor's SQLite file, written through ``Store.call``.

``migrate(db)`` is the schema step (in storage.py's ``_MIGRATIONS``);
``insert_report`` runs on the writer thread and answers "imported" or
"duplicate" (same reporter org and report id); the IMAP collector remembers
the UIDs it has looked at (per account, folder and UIDVALIDITY) so it never
reads a message twice; reverse DNS names of source IPs are cached.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlite_utils import Database

if TYPE_CHECKING:  # the schema step must not need the parser (or defusedxml)
    from flowtui.core.dmarc.parse import Report


def migrate(db: Database) -> None:
    db.table("dmarc_reports").create(
        {
            "id": int, "org": str, "report_id": str, "email": str, "version": str,
            "begin": int, "end": int, "domain": str,
            "p": str, "sp": str, "pct": str, "adkim": str, "aspf": str, "np": str, "fo": str, "testing": str,
            "errors": str, "source": str, "imported_at": float, "records": int, "messages": int,
        },
        pk="id",
        not_null={"org", "report_id", "begin", "end", "domain", "imported_at"},
    )
    reports = db.table("dmarc_reports")
    reports.create_index(["org", "report_id"], index_name="dmarc_reports_org_id", unique=True)  # duplicates
    reports.create_index(["domain", "begin"], index_name="dmarc_reports_domain_begin")
    db.table("dmarc_records").create(
        {
            "id": int, "report": int, "domain": str, "begin": int, "end": int,
            "source_ip": str, "count": int, "disposition": str, "dkim": str, "spf": str,
            "dkim_aligned": int, "spf_aligned": int, "dmarc_pass": int,
            "header_from": str, "envelope_from": str, "envelope_to": str,
            "reasons": str, "auth": str,
        },
        pk="id",
        not_null={"report", "domain", "begin", "source_ip", "count", "dmarc_pass"},
    )
    records = db.table("dmarc_records")
    records.create_index(["domain", "begin"], index_name="dmarc_records_domain_begin")  # pass share over time
    records.create_index(["source_ip", "begin"], index_name="dmarc_records_ip_begin")  # first seen per source
    records.create_index(["report"], index_name="dmarc_records_report")
    db.table("dmarc_rdns").create(
        {"ip": str, "name": str, "resolved_at": float, "error": str}, pk="ip", not_null={"resolved_at"},
    )
    db.table("dmarc_imap_seen").create(
        {"account": str, "folder": str, "uidvalidity": int, "uid": int, "seen_at": float, "outcome": str},
        pk=("account", "folder", "uidvalidity", "uid"),
    )


def insert_report(db: Database, report: Report, source: str, now: float | None = None) -> str:
    """On the writer thread: "imported", or "duplicate" when org + report id is stored already."""
    conn = db.conn
    if conn.execute("SELECT 1 FROM dmarc_reports WHERE org = ? AND report_id = ?",
                    (report.org, report.report_id)).fetchone():
        return "duplicate"
    pol = report.policy
    cur = conn.execute(
        "INSERT INTO dmarc_reports (org, report_id, email, version, begin, end, domain, p, sp, pct, adkim, aspf,"
        " np, fo, testing, errors, source, imported_at, records, messages)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (report.org, report.report_id, report.email, report.version, report.begin, report.end, report.domain,
         pol.get("p"), pol.get("sp"), pol.get("pct"), pol.get("adkim"), pol.get("aspf"), pol.get("np"),
         pol.get("fo"), pol.get("testing"), json.dumps(list(report.errors)) if report.errors else None,
         source[:500], time.time() if now is None else now, len(report.records), report.messages),
    )
    rid = cur.lastrowid
    conn.executemany(
        "INSERT INTO dmarc_records (report, domain, begin, end, source_ip, count, disposition, dkim, spf,"
        " dkim_aligned, spf_aligned, dmarc_pass, header_from, envelope_from, envelope_to, reasons, auth)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (rid, report.domain, report.begin, report.end, r.source_ip, r.count, r.disposition, r.dkim, r.spf,
             int(r.dkim == "pass"), int(r.spf == "pass"), int(r.dmarc_pass), r.header_from, r.envelope_from,
             r.envelope_to, json.dumps(r.reasons) if r.reasons else None,
             json.dumps([[a.method, a.domain, a.result, a.selector or a.scope] for a in r.auth]))
            for r in report.records
        ],
    )
    return "imported"


# ---- IMAP bookkeeping ---------------------------------------------------------

def seen_uids(conn: sqlite3.Connection, account: str, folder: str, uidvalidity: int) -> set[int]:
    rows = conn.execute(
        "SELECT uid FROM dmarc_imap_seen WHERE account = ? AND folder = ? AND uidvalidity = ?",
        (account, folder, uidvalidity),
    ).fetchall()
    return {r[0] for r in rows}


def remember_uids(account: str, folder: str, uidvalidity: int, outcomes: dict[int, str]):
    """A ``Store.call`` function recording UIDs looked at (and what they were)."""
    now = time.time()

    def fn(db: Database) -> None:
        db.conn.executemany(
            "INSERT OR REPLACE INTO dmarc_imap_seen (account, folder, uidvalidity, uid, seen_at, outcome)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(account, folder, uidvalidity, uid, now, outcome[:300]) for uid, outcome in outcomes.items()],
        )

    return fn


# ---- reverse DNS cache ----------------------------------------------------------

RDNS_TTL_S = 7 * 86400.0


def cached_names(conn: sqlite3.Connection, ips: Iterable[str]) -> dict[str, str | None]:
    """IP -> PTR name (None: looked up, none found) for the IPs in the cache."""
    out: dict[str, str | None] = {}
    ips = list(ips)
    for i in range(0, len(ips), 500):
        chunk = ips[i:i + 500]
        rows = conn.execute(
            f"SELECT ip, name FROM dmarc_rdns WHERE ip IN ({','.join('?' * len(chunk))})", chunk
        ).fetchall()
        out.update({r[0]: r[1] for r in rows})
    return out


def store_names(names: dict[str, tuple[str | None, str | None]]):
    """A ``Store.call`` function caching IP -> (name, error)."""
    now = time.time()

    def fn(db: Database) -> None:
        db.conn.executemany(
            "INSERT OR REPLACE INTO dmarc_rdns (ip, name, resolved_at, error) VALUES (?, ?, ?, ?)",
            [(ip, name, now, err) for ip, (name, err) in names.items()],
        )

    return fn
