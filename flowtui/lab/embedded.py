"""The embedded lab: a real mail chain in pure Python, in one asyncio loop.

hop1 (aiosmtpd: STARTTLS + AUTH) -> hop2 -> ... -> hopN -> delivery -> pymap
mailbox (IMAP with IDLE on one port, IMAPS on another).

Each hop adds a Received header the way an MTA does, keeps accepted mail in a
queue and retries the next hop every second until it answers, so a stopped or
held hop delays mail instead of losing it. The delivery step adds the final
Received header (as an LMTP delivery would) and records the true instant each
message lands in the mailbox, so benchmarks can compare flowtui's measured
times with the truth. No system packages and no root are needed.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import secrets
import ssl
import time
from argparse import Namespace
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import aiosmtplib
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult, LoginPassword

from flowtui.lab.common import (
    LOOPBACK,
    PROBE_USER,
    SENDER_USER,
    LabState,
    check_hops,
    free_ports,
    make_certificate,
    new_password,
    write_lab_config,
)

log = logging.getLogger("flowtui.lab.embedded")
# aiosmtpd logs a warning about its own deprecated attribute whenever AUTH succeeds
logging.getLogger("mail.log").addFilter(lambda rec: "login_data is deprecated" not in rec.getMessage())

RETRY_S = 1.0  # like the Postfix lab's queue_run_delay / backoff
QUEUE_LIFETIME_S = 600.0  # a message no next hop took by then is dropped (and logged)
_MSGID = re.compile(rb"^message-id:\s*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)
_PROBE = re.compile(rb"^x-flowtui-probe:\s*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Delivery:
    """One message landing in the mailbox, timed by the lab itself."""

    message_id: str | None
    probe: str | None
    wall: float  # time.time() when the mailbox held it
    mono: float  # time.monotonic() at the same instant


@dataclass
class _Queued:
    data: bytes
    mail_from: str
    rcpts: list[str]
    since: float


def _base_address(address: str) -> str:
    """probe+Junk@example.test -> probe@example.test (the +detail names a folder)."""
    local, _, domain = address.lower().partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _detail_folder(address: str) -> str:
    local = address.partition("@")[0]
    return local.split("+", 1)[1] if "+" in local else "INBOX"


def _header_block(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def _received(session, envelope, by: str, proto: str) -> bytes:
    peer = session.peer[0] if session.peer else "unknown"
    tls = ""
    ssl_obj = (session.ssl or {}).get("ssl_object")
    if ssl_obj is not None:
        cipher = ssl_obj.cipher()
        tls = f"\r\n\t(using {ssl_obj.version()} with cipher {cipher[0] if cipher else 'unknown'})"
        proto += "S"
    if session.authenticated:
        proto += "A"
    rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else "unknown"
    return (
        f"Received: from {session.host_name or 'unknown'} (localhost [{peer}]){tls}\r\n"
        f"\tby {by} (flowtui embedded lab) with {proto} id {secrets.token_hex(6).upper()}\r\n"
        f"\tfor <{rcpt}>; {email.utils.format_datetime(datetime.now(timezone.utc))}\r\n"
    ).encode()


class Hop:
    """One relay: accepts mail, stamps a Received header, queues, forwards."""

    def __init__(self, lab: EmbeddedLab, number: int, port: int) -> None:
        self.lab = lab
        self.number = number
        self.port = port
        self.name = f"hop{number}.demo.test"
        self.held = False
        self.rewrite = None  # fault hook: a function bytes -> bytes applied to mail passing this hop
        self.queue: list[_Queued] = []
        self.server: asyncio.AbstractServer | None = None
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    # -- aiosmtpd handler -------------------------------------------------
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.is_last and _base_address(address) not in (PROBE_USER, SENDER_USER):
            return "550 5.1.1 <%s>: recipient unknown in the lab mailbox" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        data = _received(session, envelope, self.name, "ESMTP") + envelope.original_content
        if self.rewrite is not None:
            data = self.rewrite(data)
        queue_id = secrets.token_hex(5).upper()
        self.queue.append(_Queued(data, envelope.mail_from, list(envelope.rcpt_tos), time.monotonic()))
        self._wake.set()
        return f"250 2.0.0 Ok: queued as {queue_id}"

    # -- life cycle -------------------------------------------------------
    @property
    def is_last(self) -> bool:
        return self.number == self.lab.hops

    def _protocol(self) -> SMTPProtocol:
        if self.number == 1:  # the submission hop: AUTH, after STARTTLS when TLS is on
            return SMTPProtocol(
                self,
                hostname=self.name,
                ident="flowtui embedded lab",
                tls_context=self.lab.server_tls,
                require_starttls=False,
                auth_required=True,
                auth_require_tls=self.lab.server_tls is not None,
                authenticator=self.lab.authenticate,
            )
        return SMTPProtocol(self, hostname=self.name, ident="flowtui embedded lab")

    async def start(self) -> None:
        if self.server is None:
            loop = asyncio.get_running_loop()
            self.server = await loop.create_server(self._protocol, LOOPBACK, self.port)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"lab-{self.name}")

    async def stop(self) -> None:
        """Refuse connections from now on; queued mail stays queued."""
        if self.server is not None:
            self.server.close()
            if hasattr(self.server, "close_clients"):  # Python >= 3.13
                self.server.close_clients()
            await self.server.wait_closed()
            self.server = None

    async def close(self) -> None:
        await self.stop()
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False
        self._wake.set()

    # -- the queue manager ------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                async with asyncio.timeout(RETRY_S):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self.held or self.server is None:
                continue  # a held or stopped hop does not pass mail on
            for item in list(self.queue):
                if await self._forward(item):
                    self.queue.remove(item)
                elif time.monotonic() - item.since > QUEUE_LIFETIME_S:
                    log.warning("%s: dropped a message no next hop took in %ss", self.name, QUEUE_LIFETIME_S)
                    self.queue.remove(item)

    async def _forward(self, item: _Queued) -> bool:
        if self.is_last:
            await self.lab.deliver(item, self.name)
            return True
        if self.lab.delay.get(self.number):
            await asyncio.sleep(self.lab.delay[self.number])
        try:
            await aiosmtplib.send(
                item.data,
                sender=item.mail_from,
                recipients=item.rcpts,
                hostname=LOOPBACK,
                port=self.lab.hop(self.number + 1).port,
                local_hostname=self.name,
                start_tls=False,
                timeout=10,
            )
            return True
        except aiosmtplib.SMTPRecipientsRefused as exc:
            log.warning("%s: next hop refused every recipient: %s", self.name, exc)
            return True  # permanent; a real MTA would bounce it
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.info("%s: next hop not ready (%s); retrying", self.name, exc)
            return False


class EmbeddedLab:
    """A running embedded lab. Make one with ``await EmbeddedLab.start(...)``."""

    def __init__(self, lab_dir: Path | None, hops: int) -> None:
        self.dir = lab_dir
        self.hops = hops
        self.hop_list: list[Hop] = []
        self.deliveries: list[Delivery] = []
        self.delivered = asyncio.Condition()
        self.delay: dict[int, float] = {}  # extra seconds a hop waits before forwarding
        self.server_tls: ssl.SSLContext | None = None
        self.state: LabState
        self._stack = AsyncExitStack()
        self._backend = None
        self._log = None

    @classmethod
    async def start(cls, lab_dir: str | Path | None = None, hops: int = 2, tls: bool = True) -> EmbeddedLab:
        """Start every server; return when all of them listen.

        With ``lab_dir`` the lab writes its certificate, ``lab.json``,
        ``lab.toml`` and ``deliveries.jsonl`` there.
        """
        check_hops(hops)
        path = Path(lab_dir).resolve() if lab_dir else None
        lab = cls(path, hops)
        try:
            await lab._start(tls)
        except BaseException:
            await lab.aclose()
            raise
        return lab

    async def _start(self, tls: bool) -> None:
        ports = free_ports(self.hops + 2)
        self.state = LabState(
            kind="embedded",
            dir=str(self.dir or ""),
            hops=self.hops,
            smtp_ports=ports[: self.hops],
            imap_port=ports[self.hops],
            imaps_port=ports[self.hops + 1],
            passwords={PROBE_USER: new_password(), SENDER_USER: new_password()},
            started=time.time(),
        )
        cert = None
        if tls and self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            cert = await asyncio.to_thread(make_certificate, self.dir / "tls")
            if cert is not None:
                self.server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                self.server_tls.load_cert_chain(*cert)
        await self._start_imap()
        self.hop_list = [Hop(self, n, port) for n, port in enumerate(self.state.smtp_ports, start=1)]
        for hop in reversed(self.hop_list):
            await hop.start()
            self._stack.push_async_callback(hop.close)
        if self.dir is not None:
            self._log = open(self.dir / "deliveries.jsonl", "a", buffering=1)
            self._stack.callback(self._log.close)
            self.state.save()
            write_lab_config(self.state, tls=self.server_tls is not None)

    async def _start_imap(self) -> None:
        # imported here: pymap is heavy, and only the embedded lab needs it
        from proxyprotocol.reader import ProxyProtocolReader
        from pymap.backend.dict import DictBackend
        from pymap.imap import IMAPServer, IMAPService

        args = Namespace(
            debug=False, host=[LOOPBACK], port=str(self.state.imap_port), cert=None, key=None,
            tls=False, proxy_protocol=None, inherited_sockets=None, passlib_cfg=None,
            demo_data=False, demo_user=PROBE_USER, demo_password=self.state.passwords[PROBE_USER],
        )
        backend, config = await DictBackend.init(args)
        config.apply_context()
        await backend.start(self._stack)
        await IMAPService(backend, config).start(self._stack)
        self._backend = backend
        async with backend.login.demo_user_identity.new_session() as session:
            await session.create_mailbox("Junk")
        if self.server_tls is not None:  # pymap has no implicit TLS of its own
            callback = ProxyProtocolReader(config.proxy_protocol).get_callback(IMAPServer(backend.login, config))
            imaps = await asyncio.start_server(callback, LOOPBACK, self.state.imaps_port, ssl=self.server_tls)
            self._stack.push_async_callback(imaps.wait_closed)
            self._stack.callback(imaps.close)

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> EmbeddedLab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- used by the hops -------------------------------------------------
    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode(errors="replace") == SENDER_USER
            and secrets.compare_digest(auth_data.password, self.state.passwords[SENDER_USER].encode())
        )
        return AuthResult(success=ok, handled=False)

    async def deliver(self, item: _Queued, last_hop: str) -> None:
        """Into the mailbox, as Dovecot LMTP does: probe+Folder@ lands in Folder (made if missing)."""
        from pymap.exceptions import MailboxNotFound
        from pymap.parsing.message import AppendMessage

        folder = _detail_folder(item.rcpts[0])

        now = datetime.now(timezone.utc)
        stamp = (
            f"Received: from {last_hop} ([127.0.0.1])\r\n"
            f"\tby mailbox.demo.test with LMTP id {secrets.token_hex(8)}\r\n"
            f"\t(envelope-from <{item.mail_from}>)\r\n"
            f"\tfor <{item.rcpts[0]}>; {email.utils.format_datetime(now)}\r\n"
        ).encode()
        data = f"Return-Path: <{item.mail_from}>\r\nDelivered-To: {item.rcpts[0]}\r\n".encode() + stamp + item.data
        async with self._backend.login.demo_user_identity.new_session() as session:
            try:
                await session.append_messages(folder, [AppendMessage(data, now, frozenset())])
            except MailboxNotFound:
                await session.create_mailbox(folder)
                await session.append_messages(folder, [AppendMessage(data, now, frozenset())])
        landed = Delivery(*self._ids(data), wall=time.time(), mono=time.monotonic())
        self.deliveries.append(landed)
        if self._log is not None:
            self._log.write(json.dumps(landed.__dict__) + "\n")
        async with self.delivered:
            self.delivered.notify_all()

    @staticmethod
    def _ids(data: bytes) -> tuple[str | None, str | None]:
        head = _header_block(data)
        m, p = _MSGID.search(head), _PROBE.search(head)
        return (
            m.group(1).decode(errors="replace") if m else None,
            p.group(1).decode(errors="replace").strip() if p else None,
        )

    # -- controls ----------------------------------------------------------
    def hop(self, number: int) -> Hop:
        from flowtui.lab.common import check_hop

        check_hop(number, self.hops)
        return self.hop_list[number - 1]

    async def wait_for_delivery(self, message_id: str, timeout: float = 10.0) -> Delivery:
        async def seen() -> Delivery:
            async with self.delivered:
                while True:
                    for d in self.deliveries:
                        if d.message_id == message_id:
                            return d
                    await self.delivered.wait()

        return await asyncio.wait_for(seen(), timeout)

    def describe_hops(self) -> dict[str, str]:
        out = {}
        for hop in self.hop_list:
            state = "running" if hop.server is not None else "stopped"
            flow = "held" if hop.held else "flowing"
            out[f"hop{hop.number}"] = f"{state} smtp 127.0.0.1:{hop.port}, {flow}, queue {len(hop.queue)}"
        out["mailbox"] = f"running imap 127.0.0.1:{self.state.imap_port} imaps 127.0.0.1:{self.state.imaps_port}"
        return out
