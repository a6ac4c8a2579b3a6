"""Bounces: find delivery failure reports (DSNs) of our probes in the sender's mailbox.

A route with ``[routes.bounces]`` names the mailbox its probes' envelope
sender reads (where bounces come back). While that route has probes that are
pending (or lost within the late window), the watcher looks there every
``poll_interval`` for reports about them.

Safety: the sender's mailbox is someone's mailbox. The folder is opened with
EXAMINE (read-only: no flag can change, nothing can be expunged), the server
itself searches for the id of a probe we are waiting for (``UID SEARCH TEXT``: a
DSN carries it in the returned headers, which Dovecot indexes as headers). Of
a message it names, three header fields are read first (Return-Path, From,
Content-Type); only one that they show to be a delivery report (null sender,
multipart/report, or the mailer daemon) is fetched whole, with ``BODY.PEEK``. It
decides a probe only when it reads as a bounce (``parse_bounce``) and carries
the probe's own Message-ID, which holds the probe's HMAC-signed token. Nothing
is ever flagged, moved or deleted here: a bounce stays where it landed.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from flowtui.core.headers import parse_bounce
from flowtui.core.model import Bounce, ImapSettings
from flowtui.core.probes.imap import LoginFailed, _literals, examine, open_connection, quote

log = logging.getLogger("flowtui.bounces")

MAX_SEARCHES = 50  # probes looked for per round (the newest first)
MAX_BOUNCE_BYTES = 2 * 1024 * 1024  # a report bigger than this is not fetched

# (probe_id, message_id, sent_at) of the probes a bounce could be about
Wanted = Callable[[], list[tuple[str, str, float]]]
OnBounce = Callable[[str, Bounce, float], Awaitable[None] | None]


def _since(epoch: float) -> str:
    """An IMAP SEARCH date (day granularity, a day early for time zones)."""
    return datetime.fromtimestamp(epoch - 86400, timezone.utc).strftime("%d-%b-%Y")


REPORT_FIELDS = "RETURN-PATH FROM CONTENT-TYPE"
_REPORTER = re.compile(r"mailer-daemon|postmaster|mail delivery (sub)?system", re.I)


def looks_like_report(fields: email.message.Message) -> bool:
    """From its header fields alone: a delivery report comes from the null sender
    (``Return-Path: <>``), is a ``multipart/report``, or is signed by the mailer daemon."""
    if any(v.strip() == "<>" for v in fields.get_all("Return-Path") or []):
        return True
    if "multipart/report" in str(fields.get("Content-Type", "")).lower():
        return True
    return bool(_REPORTER.search(str(fields.get("From", ""))))


class BounceWatcher:
    def __init__(self, settings: ImapSettings, wanted: Wanted, on_bounce: OnBounce) -> None:
        self.settings = settings
        self.wanted = wanted
        self.on_bounce = on_bounce
        self.name = f"{settings.username or ''}@{settings.host}:{settings.port} (bounces)"
        self.state = "idle"
        self.detail = ""
        self.rounds = 0
        self._seen: dict[str, set[int]] = {}  # folder -> UIDs already read (reports or not)
        self._validity: dict[str, str] = {}
        self._imap = None

    async def run(self) -> None:
        """Look every poll interval while there are probes to look for; until cancelled."""
        try:
            while True:
                if self.wanted():
                    try:
                        await self.check()
                    except asyncio.CancelledError:
                        raise
                    except (LoginFailed, OSError, asyncio.TimeoutError, Exception) as exc:  # a result, not a crash
                        self.state, self.detail = "down", f"{type(exc).__name__}: {exc}" if not isinstance(exc, LoginFailed) else str(exc)
                        log.warning("%s: %s", self.name, self.detail)
                        await self._close()
                await asyncio.sleep(self.settings.poll_interval_s)
        finally:
            await self._close()

    async def _close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is not None:
            try:
                await asyncio.wait_for(imap.logout(), 2)
            except Exception:
                pass

    async def check(self) -> int:
        """One round: search every folder for the wanted probes; returns bounces found."""
        wanted = sorted(self.wanted(), key=lambda w: -w[2])[:MAX_SEARCHES]
        if not wanted:
            return 0
        if self._imap is None:
            self._imap = await open_connection(self.settings)
        imap = self._imap
        found = 0
        for folder in self.settings.folders:
            r = await examine(imap, quote(folder))
            if r.result != "OK":
                raise LoginFailed(f"cannot examine folder {folder!r}: "
                                  + " ".join(b.decode(errors="replace") for b in r.lines if isinstance(b, bytes)))
            validity = next((b.decode(errors="replace") for b in r.lines
                             if isinstance(b, bytes) and b"UIDVALIDITY" in b.upper()), "")
            if self._validity.get(folder) != validity:
                self._validity[folder] = validity
                self._seen[folder] = set()
            seen = self._seen[folder]
            for probe_id, message_id, sent_at in wanted:
                r = await imap.uid_search("SINCE", _since(sent_at), "TEXT", f'"{probe_id}"', charset=None)
                if r.result != "OK":
                    continue
                uids = [int(x) for line in r.lines if isinstance(line, bytes) and line[:1].isdigit()
                        for x in line.split() if x.isdigit()]
                for uid in uids:
                    if uid in seen:
                        continue
                    seen.add(uid)
                    bounce = await self._read(imap, uid, message_id)
                    if bounce is not None:
                        found += 1
                        out = self.on_bounce(probe_id, bounce, time.time())
                        if asyncio.iscoroutine(out):
                            await out
                        break
        self.rounds += 1
        self.state, self.detail = "ok", f"{found} bounce(s) found" if found else ""
        return found

    async def _read(self, imap, uid: int, message_id: str) -> Bounce | None:
        # first its size and the three header fields that tell a delivery report from
        # people's mail (a forward or a reply that quotes the probe): only a report is read
        r = await imap.uid("fetch", str(uid), f"(RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({REPORT_FIELDS})])")
        parts = _literals(r)
        if not parts:
            return None
        _, fields, line = parts[0]
        if not looks_like_report(email.message_from_bytes(fields, policy=email.policy.compat32)):
            return None
        try:
            size = int(line.upper().split(b"RFC822.SIZE", 1)[1].split()[0].strip(b")"))
        except (IndexError, ValueError):
            size = 0
        if size > MAX_BOUNCE_BYTES:
            log.info("%s: UID %s names a probe but is %d bytes: not read", self.name, uid, size)
            return None
        r = await imap.uid("fetch", str(uid), "(BODY.PEEK[])")
        parts = _literals(r)
        if not parts:
            return None
        raw = parts[0][1]
        if message_id.encode() not in raw:  # the server's match was another text, not our signed id
            return None
        bounce = parse_bounce(email.message_from_bytes(raw, policy=email.policy.compat32))
        if bounce is None:
            return None  # mentions the probe (a forward, a reply) but is not a failure report
        if (bounce.action or "failed").lower() != "failed":
            return None  # "delayed" (still trying), "relayed", "delivered": not a bounce
        if bounce.original_message_id and bounce.original_message_id.strip() != message_id:
            return None  # a report about another message that quotes our id
        return bounce
