"""Collect DMARC aggregate reports from an IMAP folder on a schedule.

Safety, as for probes (DESIGN.md "The probe"): with ``on_import = "remember"``
the folder is opened read-only (EXAMINE) and only ``BODY.PEEK`` is used, so no
flag of any message changes. A message is fetched whole only when its header
says it could be a report (multipart, XML, gzip, zip or octet-stream) and it
is not too large. Only a message that held at least one report (imported, or
a duplicate) is marked \\Seen ("seen") or moved ("move:FOLDER"); every other
message keeps its flags and its place. Every UID looked at is remembered
(with its folder's UIDVALIDITY), so nothing is read twice.
"""

from __future__ import annotations

import asyncio
import email
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from flowtui.core.dmarc.importer import Outcome, import_bytes
from flowtui.core.dmarc.parse import MAX_RAW_BYTES
from flowtui.core.dmarc.rdns import Lookup, resolve_missing
from flowtui.core.dmarc.store import remember_uids, seen_uids
from flowtui.core.events import DmarcReportsImported, EventBus
from flowtui.core.model import DmarcSettings
from flowtui.core.probes.imap import LoginFailed, _literals, examine, open_connection, quote

log = logging.getLogger("flowtui.dmarc")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.I)
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)", re.I)
_MAYBE_REPORT = re.compile(r"multipart/|application/|text/xml", re.I)
# in a BODYSTRUCTURE: a part typed as a report can be, or an octet-stream named like one
_REPORT_PART = re.compile(rb'"application" "(zip|gzip|x-gzip|x-zip|x-zip-compressed|xml|x-xml)"|"text" "xml"', re.I)
_OCTET_PART = re.compile(rb'"application" "octet-stream"', re.I)
_REPORT_NAME = re.compile(rb'\.(xml|xml\.gz|gz|gzip|zip)"', re.I)


def _structure_may_hold_report(structure: bytes) -> bool:
    if _REPORT_PART.search(structure):
        return True
    return bool(_OCTET_PART.search(structure) and _REPORT_NAME.search(structure))


BATCH = 200  # messages looked at (and marked or moved) per step


@dataclass
class CollectResult:
    imported: int = 0
    duplicates: int = 0
    skipped: int = 0  # not reports: left alone
    errors: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


class DmarcCollector:
    """Fetches new reports from ``settings.folder`` every ``settings.interval_s`` (until cancelled)."""

    def __init__(self, settings: DmarcSettings, store, bus: EventBus | None = None, *,
                 lookup: Lookup | None = None,
                 on_round: Callable[[CollectResult], Awaitable[None] | None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.lookup = lookup  # reverse DNS of new sources; None: left for the screen to ask
        self.on_round = on_round
        imap = settings.imap
        self.account = f"{imap.username or ''}@{imap.host}:{imap.port}"
        self.state = "starting"
        self.detail = ""
        self.rounds = 0
        self.last_round_at: float | None = None  # epoch of the last finished round (good or not)
        self.wake = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                result = await self.collect_once()
                self.state, self.detail = "ok", f"{result.imported} imported"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server is down, a login failed: try again next round
                self.state, self.detail = "error", " ".join(str(exc).split()) or type(exc).__name__
                log.warning("dmarc %s: %s", self.account, self.detail)
            self.rounds += 1
            self.last_round_at = time.time()
            try:
                await asyncio.wait_for(self.wake.wait(), self.settings.interval_s)
            except (TimeoutError, asyncio.TimeoutError):
                pass
            self.wake.clear()

    async def collect_once(self) -> CollectResult:
        s = self.settings
        result = CollectResult()
        imap = await open_connection(s.imap)
        try:
            readonly = s.on_import == "remember"
            r = await (examine(imap, quote(s.folder)) if readonly else imap.select(quote(s.folder)))
            if r.result != "OK":
                words = " ".join(x.decode(errors="replace") for x in r.lines if isinstance(x, bytes))
                raise LoginFailed(f"cannot open folder {s.folder!r} (dmarc.folder): {words or r.result}")
            m = _UIDVALIDITY.search(b" ".join(x for x in r.lines if isinstance(x, bytes)))
            validity = int(m.group(1)) if m else 0
            known = await asyncio.to_thread(
                self.store.read, lambda conn: seen_uids(conn, self.account, s.folder, validity))
            r = await imap.uid_search("ALL", charset=None)
            if r.result != "OK":
                raise RuntimeError(f"search in {s.folder!r} failed: {r.result}")
            uids = sorted(int(u) for u in (r.lines[0].split() if r.lines and isinstance(r.lines[0], bytes) else [])
                          if u.isdigit() and int(u) not in known)
            for start in range(0, len(uids), BATCH):  # a backlog in steps, each remembered when done
                remembered: dict[int, str] = {}
                reports: list[int] = []
                for uid in uids[start:start + BATCH]:
                    outcome = await self._consider(imap, uid, result)
                    remembered[uid] = outcome
                    if outcome in ("imported", "duplicate"):
                        reports.append(uid)
                if reports and s.on_import != "remember":
                    await self._act(imap, reports)
                await asyncio.wrap_future(self.store.call(remember_uids(self.account, s.folder, validity, remembered)))
        finally:
            try:
                await asyncio.wait_for(imap.logout(), 5)
            except Exception:
                pass
        if self.lookup is not None and result.outcomes:
            ips = {rec.source_ip for o in result.outcomes if o.report for rec in o.report.records}
            await asyncio.to_thread(resolve_missing, self.store, ips, self.lookup)
        if self.bus is not None and (result.imported or result.duplicates or result.errors):
            self.bus.publish(DmarcReportsImported(result.imported, result.duplicates, tuple(result.errors)))
        if self.on_round is not None:
            maybe = self.on_round(result)
            if asyncio.iscoroutine(maybe):
                await maybe
        return result

    async def _consider(self, imap, uid: int, result: CollectResult) -> str:
        r = await imap.uid("fetch", str(uid), "(UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (CONTENT-TYPE)])")
        parts = _literals(r)
        if not parts:
            return "gone"
        _, header, line = parts[0]
        size = _SIZE.search(line)
        ctype = email.message_from_bytes(header).get("Content-Type", "text/plain") or "text/plain"
        if not _MAYBE_REPORT.search(ctype):
            result.skipped += 1
            return "not a report"
        if ctype.lower().lstrip().startswith("multipart/"):
            # a mail with parts: read its structure (metadata, not content) and fetch the body
            # only when a part can be a report, so a letter with a PDF stays unread
            r = await imap.uid("fetch", str(uid), "(UID BODYSTRUCTURE)")
            structure = b" ".join(x for x in r.lines if isinstance(x, (bytes, bytearray)))
            if not _structure_may_hold_report(structure):
                result.skipped += 1
                return "not a report"
        if size and int(size.group(1)) > MAX_RAW_BYTES:
            msg = f"uid {uid}: {size.group(1)} bytes is over the {MAX_RAW_BYTES // 1024 // 1024} MiB limit"
            result.errors.append(msg)
            return "too large"
        r = await imap.uid("fetch", str(uid), "(UID BODY.PEEK[])")
        parts = _literals(r)
        if not parts:
            return "gone"
        outcomes = await asyncio.to_thread(import_bytes, self.store, f"{self.settings.folder} uid {uid}", parts[0][1])
        result.outcomes += outcomes
        statuses = {o.status for o in outcomes}
        for o in outcomes:
            if o.status == "imported":
                result.imported += 1
            elif o.status == "duplicate":
                result.duplicates += 1
            else:
                result.errors.append(o.line())
        if "imported" in statuses:
            return "imported"
        if "duplicate" in statuses:
            return "duplicate"
        result.skipped += 1
        return "error: " + (outcomes[0].detail if outcomes else "")

    async def _act(self, imap, uids: list[int]) -> None:
        """Mark or move exactly these report UIDs (nothing else)."""
        s = self.settings
        uid_set = ",".join(str(u) for u in uids)
        if s.on_import == "seen":
            r = await imap.uid("store", uid_set, "+FLAGS.SILENT", r"(\Seen)")
            if r.result != "OK":
                log.warning("dmarc %s: could not mark reports seen: %s", self.account, r.result)
            return
        assert s.move_to is not None
        await imap.create(quote(s.move_to))  # NO when it exists: fine
        caps = {c.upper() for c in imap.protocol.capabilities}
        if "MOVE" in caps:
            r = await imap.uid("move", uid_set, quote(s.move_to))
        elif "UIDPLUS" in caps:
            r = await imap.uid("copy", uid_set, quote(s.move_to))
            if r.result == "OK":
                r = await imap.uid("store", uid_set, "+FLAGS.SILENT", r"(\Deleted)")
                if r.result == "OK":
                    r = await imap.uid("expunge", uid_set)
        else:  # EXPUNGE without UIDPLUS would remove what others marked \Deleted: copy only
            r = await imap.uid("copy", uid_set, quote(s.move_to))
            log.warning("dmarc %s: no MOVE or UIDPLUS: reports copied to %s, originals left", self.account, s.move_to)
        if r.result != "OK":
            log.warning("dmarc %s: could not move reports to %s: %s", self.account, s.move_to, r.result)
