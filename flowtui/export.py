"""Raw probes and hops as CSV or JSON lines, streamed from one read snapshot.

Rows are read with one cursor and written as they come: memory does not
grow with the window. Nothing secret is in the probes or hops tables (the
store keeps no passwords); the per-installation secret never leaves its file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any

from flowtui.report import csv_cell

PROBE_FIELDS = (
    "probe_id", "route", "seq", "state", "sent_at", "submit_s", "transit_s", "total_s", "detected_at",
    "detect_uncertainty_s", "queue_id", "folder", "message_id", "error", "error_phase", "content_ok",
)
HOP_FIELDS = ("idx", "from_host", "from_rdns", "from_ip", "by_host", "with_protocol", "hop_id", "for_addr",
              "via", "envelope_from", "tls", "timestamp", "delay_s")
AUTH_FIELDS = ("spf", "dkim", "dmarc")


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _auth(text: str | None) -> dict[str, str | None]:
    d = json.loads(text) if text else {}
    return {m: (d.get(m) or {}).get("result") for m in AUTH_FIELDS}


def _rows(conn: Any, since: float, until: float, routes: list[str] | None) -> Iterator[tuple[dict, dict | None]]:
    """(probe, hop or None) in order of sent_at, probe, hop index."""
    cols = ", ".join(f"p.{c}" for c in PROBE_FIELDS) + ", p.auth, " + ", ".join(f"h.{c} AS hop_{c}" for c in HOP_FIELDS)
    sql = f"SELECT {cols} FROM probes p LEFT JOIN hops h ON h.probe_id = p.probe_id WHERE p.sent_at >= ? AND p.sent_at < ?"
    args: list[Any] = [since, until]
    if routes:
        sql += f" AND p.route IN ({','.join('?' * len(routes))})"
        args += routes
    cur = conn.execute(sql + " ORDER BY p.sent_at, p.probe_id, h.idx", args)
    names = [d[0] for d in cur.description]
    for values in cur:
        row = dict(zip(names, values))
        probe = {k: row[k] for k in PROBE_FIELDS}
        probe["sent_at_utc"] = _iso(probe["sent_at"])
        probe.update(_auth(row["auth"]))
        hop = None if row["hop_idx"] is None else {k: row[f"hop_{k}"] for k in HOP_FIELDS}
        yield probe, hop


def write_export(conn: Any, out: IO[str], fmt: str, since: float, until: float,
                 routes: list[str] | None = None) -> int:
    """Write the export to ``out``; the number of probes written."""
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        head = [*PROBE_FIELDS, "sent_at_utc", *AUTH_FIELDS, *(f"hop_{c}" for c in HOP_FIELDS)]
        w.writerow(head)
        last = None
        for probe, hop in _rows(conn, since, until, routes):
            if probe["probe_id"] != last:
                n += 1
                last = probe["probe_id"]
            values = [probe[k] for k in (*PROBE_FIELDS, "sent_at_utc", *AUTH_FIELDS)]
            values += [None] * len(HOP_FIELDS) if hop is None else [hop[k] for k in HOP_FIELDS]
            w.writerow([csv_cell(v) for v in values])
        return n
    if fmt != "jsonl":
        raise ValueError(f"unknown export format {fmt!r}")  # pragma: no cover
    current: dict | None = None
    for probe, hop in _rows(conn, since, until, routes):
        if current is None or probe["probe_id"] != current["probe_id"]:
            if current is not None:
                out.write(json.dumps(current, ensure_ascii=False) + "\n")
                n += 1
            current = {**probe, "hops": []}
        if hop is not None:
            hop["tls"] = None if hop["tls"] is None else bool(hop["tls"])
            current["hops"].append(hop)
    if current is not None:
        out.write(json.dumps(current, ensure_ascii=False) + "\n")
        n += 1
    return n
