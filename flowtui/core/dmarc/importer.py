"""Import DMARC reports (files or mails, as bytes) into the store: one outcome per report.

Parsing runs on the caller's thread; the rows are written on the store's
writer thread (``Store.call``). A bad report is an "error" outcome with one
line; the rest of the batch is imported all the same.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass

from flowtui.core.dmarc.parse import MAX_RAW_BYTES, Report, ReportError, parse_reports
from flowtui.core.dmarc.store import insert_report
from flowtui.core.headers import plain_text
from flowtui.core.storage import Store

log = logging.getLogger("flowtui.dmarc")


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str  # the file (or "uid N" in a folder)
    status: str  # "imported" | "duplicate" | "error"
    detail: str = ""  # the error, or the report in a few words
    report: Report | None = None

    def line(self) -> str:
        return f"{plain_text(self.name)}: {self.status}" + (f": {plain_text(self.detail)}" if self.detail else "")


def describe(r: Report) -> str:
    return (f"{r.org} report {r.report_id} for {r.domain}: {len(r.records)} records, "
            f"{r.messages} messages")


def import_bytes(store: Store, name: str, data: bytes) -> list[Outcome]:
    """Parse and store every report in ``data``; never raises for bad input."""
    try:
        reports = parse_reports(data)
    except ReportError as exc:
        return [Outcome(name, "error", str(exc))]
    except Exception as exc:  # a parser bug must cost this report only, never the batch
        log.warning("%s: unexpected %s while parsing", name, type(exc).__name__, exc_info=True)
        return [Outcome(name, "error", f"could not be parsed ({type(exc).__name__})")]
    out = []
    for report in reports:
        try:
            status = store.call(lambda db, r=report: insert_report(db, r, name)).result()
        except Exception as exc:  # the store refused (disk full, ...): this report only
            out.append(Outcome(name, "error", f"not stored: {type(exc).__name__}: {exc}", report))
            continue
        out.append(Outcome(name, status, describe(report), report))
    return out


def read_file(path: str) -> bytes:
    """A report file's bytes, refusing what is too large before reading it. Raises ReportError."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device never end
            raise ReportError("not a regular file (a FIFO, socket or device)")
        size = st.st_size
        if size > MAX_RAW_BYTES:
            raise ReportError(f"{size} bytes is over the {MAX_RAW_BYTES // 1024 // 1024} MiB limit for a report file")
        with open(path, "rb") as f:
            return f.read(MAX_RAW_BYTES + 1)
    except IsADirectoryError:
        raise ReportError("is a directory") from None
    except FileNotFoundError:
        raise ReportError("no such file") from None
    except OSError as exc:
        raise ReportError(f"cannot read: {exc.strerror or exc}") from None


def import_files(store: Store, paths: list[str]) -> list[Outcome]:
    out = []
    for path in paths:
        try:
            data = read_file(path)
        except ReportError as exc:
            out.append(Outcome(path, "error", str(exc)))
            continue
        out += import_bytes(store, path, data)
    return out
