"""Watching a mailbox for probes over IMAP.

One long-lived connection per mailbox; IDLE where the server offers it,
polling otherwise; reconnect with backoff after any drop.

Safety: a message is looked at only if a server-side ``UID SEARCH HEADER
X-Flowtui-Probe ""`` names it, and then only that one header field is
fetched (``BODY.PEEK``, so not even \\Seen changes). Only when the token in it
verifies with this installation's secret is the message fetched whole, and
then deleted by its UID alone (UID EXPUNGE). Nothing else is ever flagged,
moved, body-fetched or deleted.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parsedate_to_datetime

import aioimaplib
from aioimaplib.aioimaplib import Command

from flowtui.core.model import ImapSettings, Security
from flowtui.core.oauth2 import TokenError
from flowtui.core.probes.smtp import tls_context
from flowtui.core.token import HEADER, Token, build_message, check_content, expected_message_id, verify_token

log = logging.getLogger("flowtui.imap")

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.I)
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]", re.I)
_FETCH_UID = re.compile(rb"UID (\d+)", re.I)
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"', re.I)
_LIST_LINE = re.compile(rb'^\(([^)]*)\) (?:"[^"]*"|NIL) (.+)$')
BACKOFF_S = (1, 2, 4, 8, 15, 30, 60)
CALIBRATION_ROUTE = "flowtui-push-calibration"  # flowtui's own messages that time the IDLE push


# OAuth2 sessions: when each connection should log in again (its token's renew time)
_RENEW_AT: weakref.WeakKeyDictionary[aioimaplib.IMAP4, float] = weakref.WeakKeyDictionary()


class _LoginExpiring(Exception):
    """The OAuth2 token of this session is about to expire: log in again with a fresh one."""


class LoginFailed(Exception):
    """The server refused the login or a folder (its words in the message): retried slowly."""


@dataclass(frozen=True)
class FoundProbe:
    """A verified probe in a watched folder."""

    token: Token
    message: Message
    folder: str
    junk: bool
    uid: int
    detected_mono: float
    detected_wall: float
    uncertainty_s: float  # how late the detection may be compared with the arrival
    live: bool  # seen as it arrived (push/poll); False: found by a scan after (re)connecting
    # the Message-ID is the one the token names and the content hash matches: a byte-true
    # copy of what flowtui sent. Only such a message is ever deleted.
    intact: bool = True


@dataclass
class _Folder:
    name: str
    junk: bool
    uidvalidity: int | None = None
    last_uid: int = 0  # highest UID looked at
    last_search_mono: float | None = None  # when the folder was last searched
    checked: set[int] = field(default_factory=set)  # candidate UIDs that were not our probes


def quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literals(resp) -> list[tuple[int | None, bytes, bytes]]:
    """(uid, literal, fetch line) of each message in a FETCH response."""
    out = []
    lines = resp.lines
    for i, line in enumerate(lines):
        if isinstance(line, bytearray) and i > 0:
            head = bytes(lines[i - 1])
            tail = bytes(lines[i + 1]) if i + 1 < len(lines) and not isinstance(lines[i + 1], bytearray) else b""
            m = _FETCH_UID.search(head) or _FETCH_UID.search(tail)
            out.append((int(m.group(1)) if m else None, bytes(line), head + tail))
    return out


async def open_connection(settings: ImapSettings, conn_lost_cb=None) -> aioimaplib.IMAP4:
    """Connect (TLS / STARTTLS / plain) and log in. Raises LoginFailed or a connection error."""
    # IMAP4 itself takes ssl_context (implicit TLS) and conn_lost_cb; IMAP4_SSL drops the latter
    imap = aioimaplib.IMAP4(
        settings.host, settings.port, timeout=settings.timeout_s, conn_lost_cb=conn_lost_cb,
        ssl_context=tls_context(settings) if settings.security is Security.TLS else None,
    )
    await imap.wait_hello_from_server()
    if settings.security is Security.STARTTLS:
        await starttls(imap, settings)
    if settings.username and settings.auth != "password":
        from flowtui.core.probes.auth import AuthRefused, imap_authenticate

        try:
            token = await imap_authenticate(imap, settings)
            if token.renew_mono is not None:
                _RENEW_AT[imap] = token.renew_mono
        except (AuthRefused, TokenError) as exc:
            await _drop(imap)
            raise LoginFailed(f"login refused: {exc}" if isinstance(exc, AuthRefused) else str(exc)) from None
    elif settings.username:
        r = await imap.login(settings.username, settings.password.value if settings.password else "")
        if r.result != "OK":
            words = " ".join(b.decode(errors="replace") for b in r.lines if isinstance(b, bytes))
            raise LoginFailed(f"login refused: {words or r.result}")
    return imap


async def _drop(imap: aioimaplib.IMAP4) -> None:
    """Log out (2 s at most) and close the transport, whatever state it is in."""
    try:
        await asyncio.wait_for(imap.logout(), 2)
    except Exception:
        pass
    try:
        if imap.protocol and imap.protocol.transport:
            imap.protocol.transport.close()
    except Exception:
        pass


async def examine(imap: aioimaplib.IMAP4, mailbox: str):
    """EXAMINE ``mailbox`` (already quoted): the folder read-only, so no flag can change.
    aioimaplib does not enter the selected state after it, so UID commands would be
    refused: set it here."""
    r = await imap.examine(mailbox)
    if r.result == "OK":
        imap.protocol.state = aioimaplib.aioimaplib.SELECTED
    return r


async def starttls(imap: aioimaplib.IMAP4, settings: ImapSettings) -> None:
    """IMAP STARTTLS (RFC 3501 6.2.1), which aioimaplib lacks: upgrade its transport in place."""
    proto = imap.protocol
    if "STARTTLS" not in proto.capabilities:
        raise LoginFailed("the server does not offer STARTTLS (the route requires it)")
    r = await asyncio.wait_for(proto.execute(Command("STARTTLS", proto.new_tag(), loop=proto.loop)), settings.timeout_s)
    if r.result != "OK":
        raise LoginFailed(f"STARTTLS refused: {r.result}")
    loop = asyncio.get_running_loop()
    proto.transport = await loop.start_tls(
        proto.transport, proto, tls_context(settings), server_hostname=settings.host
    )
    await asyncio.wait_for(proto.capability(), settings.timeout_s)  # capabilities may change after TLS


class MailboxWatcher:
    """Watches one mailbox's folders for verified probes, forever (until cancelled)."""

    def __init__(
        self,
        settings: ImapSettings,
        key: bytes,
        on_probe: Callable[[FoundProbe], Awaitable[None]],
        on_state: Callable[[str, str], None] = lambda state, detail: None,
        folders: tuple[str, ...] | None = None,
        junk_folders: tuple[str, ...] | None = None,
        busy: Callable[[], bool] = lambda: True,
        on_removed: Callable[[FoundProbe, bool], None] = lambda found, removed: None,
    ) -> None:
        self.settings = settings
        self.key = key
        self.on_probe = on_probe
        self.on_state = on_state
        self.on_removed = on_removed  # after the probe was handed over and deleted (or left)
        self.busy = busy  # True while probes are pending: junk folders are then checked often
        self.folder_names = folders or settings.folders
        self.junk_names = junk_folders if junk_folders is not None else settings.junk_folders
        self.name = f"{settings.username or ''}@{settings.host}:{settings.port}"
        self.state = "starting"
        self.detail = ""
        self.connected_once = asyncio.Event()
        self.capabilities: set[str] = set()
        self.deleted = 0
        self.push_delay_s: float | None = None  # measured: APPEND done -> EXISTS pushed
        self.left_in_place = 0
        self._imap: aioimaplib.IMAP4 | None = None
        self._folders: dict[str, _Folder] = {}
        self.wake = asyncio.Event()  # set to make the watcher look now (e.g. a probe was just sent)
        self._lost = asyncio.Event()  # the server closed the connection (noticed even in IDLE)
        self._failures = 0  # failed sessions in a row: the reconnect backoff; 0 once connected
        self._login_renew_mono: float | None = None  # OAuth2: log in afresh by then (token expiry)
        self._renewing = False
        self.relogins = 0  # sessions renewed because their token was about to expire

    def _set_state(self, state: str, detail: str = "") -> None:
        self.detail = detail
        if state != self.state:
            self.state = state
            self.on_state(state, detail)

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                await self._close()
                raise
            except _LoginExpiring:
                self.relogins += 1
                log.info("%s: token about to expire: logging in again with a fresh one", self.name)
                await self._close()
                self._renewing = True
                continue
            except LoginFailed as exc:
                self._failures += 1
                self._set_state("down", str(exc))
                self.connected_once.set()  # an answer, if not a good one: nobody should wait longer
            except Exception as exc:  # any drop: record, back off, reconnect
                self._failures += 1
                detail = " ".join(str(exc).split()) or type(exc).__name__
                self._set_state("reconnecting", detail)
                log.info("%s: %s", self.name, detail)
            await self._close()
            await asyncio.sleep(BACKOFF_S[min(self._failures, len(BACKOFF_S)) - 1])

    async def _close(self) -> None:
        imap, self._imap = self._imap, None
        if imap is None:
            return
        try:
            if imap.protocol and imap.protocol.has_pending_idle_command():
                imap.idle_done()
        except Exception:
            pass
        await _drop(imap)

    async def _session(self) -> None:
        if not self._renewing:  # a token renewal is no news: the mailbox stays watched
            self._set_state("connecting")
        self._renewing = False
        self._lost = asyncio.Event()
        lost = self._lost
        imap = self._imap = await open_connection(self.settings, conn_lost_cb=lambda exc: lost.set())
        self._login_renew_mono = _login_renew(imap)
        self.capabilities = {c.upper() for c in imap.protocol.capabilities}
        junk = self.junk_names
        if junk is None:
            junk = await self._special_use_junk(imap)
        names = [(n, False) for n in self.folder_names] + [(n, True) for n in junk if n not in self.folder_names]
        self._folders = {n: self._folders.get(n) or _Folder(n, j) for n, j in names}
        # catch up on everything that arrived while we were away (not live)
        for folder in self._folders.values():
            await self._check(imap, folder, live=False)
        primary = self._folders[self.folder_names[0]]
        await self._select(imap, primary)
        idle = "IDLE" in self.capabilities
        if idle and self.push_delay_s is None:
            self.push_delay_s = await self._calibrate(imap, primary)
            await self._check(imap, primary, live=False)  # removes the calibration message
        detail = "" if self.push_delay_s is None else f"push delay {self.push_delay_s * 1000:.0f} ms"
        self._set_state("idle" if idle else "polling", detail)
        self.connected_once.set()
        self._failures = 0  # a drop after a good session backs off from the start again
        last_junk_check = time.monotonic()
        while True:
            if self._login_renew_mono is not None and time.monotonic() >= self._login_renew_mono:
                raise _LoginExpiring()
            pushed = await (self._idle_once(imap) if idle else self._poll_wait())
            await self._check(imap, primary, live=True, pushed_at=pushed)
            others = [f for f in self._folders.values() if f is not primary]
            junk_every = min(self.settings.poll_interval_s, 5.0) if self.busy() else 60.0
            if others and time.monotonic() - last_junk_check >= junk_every:
                for folder in others:
                    await self._check(imap, folder, live=True)
                await self._select(imap, primary)
                last_junk_check = time.monotonic()

    def _until_renew(self, wait: float) -> float:
        """``wait``, cut short so the session is renewed before its token expires."""
        if self._login_renew_mono is None:
            return wait
        return max(0.05, min(wait, self._login_renew_mono - time.monotonic()))

    async def _calibrate(self, imap, folder: _Folder) -> float | None:
        """Time how late this server pushes EXISTS: APPEND a message of our own from a
        second connection while this one IDLEs. Dovecot holds pushes ~0.5 s by design."""
        try:
            other = await open_connection(self.settings)
        except Exception as exc:
            log.info("%s: push delay not measured: %s", self.name, exc)
            return None
        data = build_message(
            self.key, CALIBRATION_ROUTE, 0, "flowtui@localhost", self.settings.username or "flowtui@localhost",
            "flowtui push-delay calibration", "Measures the server's IDLE push delay; deleted at once.",
        ).data
        try:
            idle = await imap.idle_start(timeout=15)
            r = await other.append(data, mailbox=quote(folder.name))
            appended = time.monotonic()
            if r.result != "OK":
                return None
            delay = None
            deadline = appended + 10
            while (left := deadline - time.monotonic()) > 0:
                try:
                    lines = await imap.wait_server_push(timeout=left)
                except (TimeoutError, asyncio.TimeoutError):
                    break
                if _has_exists(lines):
                    delay = time.monotonic() - appended
                    break
            imap.idle_done()
            await asyncio.wait_for(idle, self.settings.timeout_s)
            return delay
        finally:
            try:
                await asyncio.wait_for(other.logout(), 2)
            except Exception:
                pass

    async def _special_use_junk(self, imap) -> tuple[str, ...]:
        if "SPECIAL-USE" not in self.capabilities and "XLIST" not in self.capabilities:
            return ()
        r = await imap.list('""', '"*"')
        found = []
        for line in r.lines:
            if not isinstance(line, bytes):
                continue
            m = _LIST_LINE.match(line)
            if m and b"\\junk" in m.group(1).lower():
                found.append(m.group(2).decode(errors="replace").strip('"'))
        return tuple(found)

    async def _select(self, imap, folder: _Folder) -> None:
        r = await imap.select(quote(folder.name))
        if r.result != "OK":  # a configuration problem, not a dropped connection
            words = " ".join(x.decode(errors="replace") for x in r.lines if isinstance(x, bytes))
            raise LoginFailed(f"cannot select folder {folder.name!r} (imap.folders): {words or r.result}")
        text = b" ".join(x for x in r.lines if isinstance(x, bytes))
        m = _UIDVALIDITY.search(text)
        validity = int(m.group(1)) if m else None
        if folder.uidvalidity is not None and validity != folder.uidvalidity:
            folder.last_uid, folder.checked = 0, set()  # the server renumbered the folder
        folder.uidvalidity = validity

    async def _idle_once(self, imap) -> float | None:
        """IDLE until the server pushes EXISTS, the watcher is woken, or renew time; returns push instant."""
        wait = self.settings.idle_renew_s
        if self.busy():
            wait = min(wait, 5.0)  # look again soon while probes are pending (junk, missed pushes)
        wait = self._until_renew(wait)
        # a connection lost while IDLE starts would leave idle_start waiting for its ack
        starting = asyncio.ensure_future(imap.idle_start(timeout=wait + 5))
        dropped = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({starting, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
            if not starting.done():
                starting.cancel()
        if not starting.done() or starting.cancelled():
            raise ConnectionError("the server closed the connection")
        idle = starting.result()
        pushed = None
        deadline = time.monotonic() + wait
        try:
            while (left := deadline - time.monotonic()) > 0:
                waker = asyncio.ensure_future(self.wake.wait())
                dropped = asyncio.ensure_future(self._lost.wait())
                push = asyncio.ensure_future(imap.wait_server_push(timeout=left))
                try:
                    done, _ = await asyncio.wait({waker, push, dropped}, return_when=asyncio.FIRST_COMPLETED)
                except BaseException:  # cancelled (engine stop): leave no task of ours behind
                    for f in (waker, push, dropped):
                        f.cancel()
                    raise
                if dropped in done:
                    waker.cancel()
                    push.cancel()
                    raise ConnectionError("the server closed the connection")
                dropped.cancel()
                if push not in done:
                    push.cancel()
                    try:
                        await push
                    except (asyncio.CancelledError, TimeoutError, asyncio.TimeoutError):
                        pass
                    self.wake.clear()
                    break
                waker.cancel()
                try:
                    lines = push.result()
                except (TimeoutError, asyncio.TimeoutError):
                    break
                if _has_exists(lines):
                    pushed = time.monotonic()
                    break
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH or lines == [aioimaplib.STOP_WAIT_SERVER_PUSH]:
                    break
        finally:
            if not self._lost.is_set() and imap.protocol.has_pending_idle_command():
                imap.idle_done()
            try:
                await asyncio.wait_for(idle, 0.1 if self._lost.is_set() else self.settings.timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
        return pushed

    async def _poll_wait(self) -> None:
        wait = min(self.settings.poll_interval_s, 1.0) if self.busy() else self.settings.poll_interval_s
        wait = self._until_renew(wait)
        waker = asyncio.ensure_future(self.wake.wait())
        dropped = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait({waker, dropped}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            dropped.cancel()
        if dropped in done:
            raise ConnectionError("the server closed the connection")
        self.wake.clear()
        return None

    async def _check(self, imap, folder: _Folder, live: bool, pushed_at: float | None = None) -> None:
        """Find new candidate probes in ``folder`` (selecting it) and hand over the verified ones."""
        await self._select(imap, folder)
        looked_at = time.monotonic()
        previous, folder.last_search_mono = folder.last_search_mono, looked_at
        r = await imap.uid_search("UID", f"{folder.last_uid + 1}:*", "HEADER", HEADER, '""', charset=None)
        if r.result != "OK":
            raise RuntimeError(f"search in {folder.name!r} failed: {r.result}")
        uids = sorted(
            int(u) for u in (r.lines[0].split() if r.lines and isinstance(r.lines[0], bytes) else [])
            if u.isdigit() and int(u) > folder.last_uid and int(u) not in folder.checked
        )
        for uid in uids:
            await self._consider(imap, folder, uid, live, pushed_at, looked_at, previous)
        if uids:
            folder.last_uid = max(folder.last_uid, max(uids))

    async def _consider(
        self, imap, folder: _Folder, uid: int, live: bool, pushed_at, looked_at, previous_search
    ) -> None:
        # 1. only the token header field, without setting \Seen; exactly one, and it verifies
        r = await imap.uid("fetch", str(uid), f"(UID BODY.PEEK[HEADER.FIELDS ({HEADER.upper()})])")
        token = None
        for _uid, literal, _ in _literals(r):
            values = email.message_from_bytes(literal).get_all(HEADER) or []
            token = verify_token(self.key, values[0]) if len(values) == 1 else None
        if token is None:
            folder.checked.add(uid)  # not ours: never looked at again
            return
        # 2. its Message-ID must be the one the token names (a token copied into other mail is not)
        r = await imap.uid("fetch", str(uid), "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        ids = [email.message_from_bytes(lit).get_all("Message-ID") or [] for _, lit, _ in _literals(r)]
        if not ids or [i.strip() for i in ids[0]] != [expected_message_id(token)]:
            folder.checked.add(uid)
            log.warning("%s: UID %s carries a valid probe token under another Message-ID: left alone", self.name, uid)
            return
        # 3. a verified probe: the whole message, still without \Seen
        r = await imap.uid("fetch", str(uid), "(UID INTERNALDATE BODY.PEEK[])")
        parts = _literals(r)
        if not parts:
            return  # gone meanwhile (deleted by someone else)
        _, raw, line = parts[0]
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        values = message.get_all(HEADER) or []
        again = verify_token(self.key, values[0]) if len(values) == 1 else None
        if again is None or again.probe_id != token.probe_id:
            folder.checked.add(uid)
            return
        intact = check_content(message, again)
        if token.route == CALIBRATION_ROUTE:  # our own timing message: just remove it
            if intact:
                await self._delete(imap, uid)
            folder.checked.add(uid)
            return
        now_wall, now_mono = time.time(), time.monotonic()
        if live:
            at = pushed_at if pushed_at is not None else looked_at
            if pushed_at is not None and self.push_delay_s:
                # the server holds its pushes (Dovecot: ~0.5 s after a change): the
                # message landed about one measured push delay before the push came.
                # The push can also come sooner (a timer another change started), so
                # the push delay stays the stated uncertainty.
                # Not before the previous search of this folder, which did not find it.
                at = pushed_at - self.push_delay_s
                if previous_search is not None:
                    at = max(at, previous_search)
            detected_mono = at
            detected_wall = now_wall - (now_mono - at)
            if pushed_at is not None:  # off by the server's push delay at most
                uncertainty = self.push_delay_s or 0.0
            elif previous_search is not None:  # it came in since the previous search
                uncertainty = looked_at - previous_search
            else:
                uncertainty = self.settings.poll_interval_s
        else:  # it arrived while we were not watching: the server's arrival time, to the second
            arrived = _internaldate(line)
            detected_wall = arrived if arrived is not None else now_wall
            detected_mono = now_mono - (now_wall - detected_wall)
            uncertainty = 1.0 if arrived is not None else float("nan")
        found = FoundProbe(
            token, message, folder.name, folder.junk, uid, detected_mono, detected_wall, uncertainty, live, intact
        )
        await self.on_probe(found)
        folder.checked.add(uid)
        if not intact:  # changed in transit, or someone's copy with other content: never deleted
            log.warning("%s: probe %s in UID %s does not match what was sent: left in place",
                        self.name, token.probe_id, uid)
            return
        removed = await self._delete(imap, uid)
        self.on_removed(found, removed)

    async def _delete(self, imap, uid: int) -> bool:
        """Remove exactly this probe: UID STORE \\Deleted + UID EXPUNGE of that UID only."""
        if "UIDPLUS" not in self.capabilities:
            # EXPUNGE would also remove messages someone else marked \Deleted: leave the probe
            self.left_in_place += 1
            log.warning("%s: no UIDPLUS, probe UID %s left in the mailbox", self.name, uid)
            return False
        r = await imap.uid("store", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        if r.result == "OK":
            r = await imap.uid("expunge", str(uid))
            if r.result == "OK":
                self.deleted += 1
                return True
        log.warning("%s: could not delete probe UID %s: %s", self.name, uid, r.result)
        return False


def _login_renew(imap: aioimaplib.IMAP4) -> float | None:
    """When a session logged in with an OAuth2 token must log in again (None: never)."""
    renew = _RENEW_AT.get(imap)
    if renew is None:
        return None
    return max(renew, time.monotonic() + 2.0)  # a very short-lived token must not spin


def _has_exists(push: object) -> bool:
    """True when a server push (a list of lines) announces new mail ("* n EXISTS")."""
    return isinstance(push, list) and any(
        isinstance(x, bytes) and x.rstrip().upper().endswith(b"EXISTS") for x in push
    )


def _internaldate(fetch_line: bytes) -> float | None:
    m = _INTERNALDATE.search(fetch_line)
    if not m:
        return None
    try:
        return parsedate_to_datetime(m.group(1).decode().replace("-", " ", 2)).timestamp()
    except (TypeError, ValueError):
        return None
