"""Small mail helpers for tests: send with aiosmtplib, look with aioimaplib.

Loopback only. TLS is verified against the lab's own certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import ssl
import time
import uuid
from pathlib import Path

import aioimaplib
import aiosmtplib

from flowtui.lab.common import PROBE_USER, SENDER_USER, LabState


def tls_context(state: LabState) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(Path(state.dir) / "tls" / "cert.pem"))


def make_message(subject: str = "lab test") -> tuple[str, bytes]:
    msgid = f"<{uuid.uuid4().hex}@test.flowtui>"
    data = (
        f"From: {SENDER_USER}\r\nTo: {PROBE_USER}\r\nSubject: {subject}\r\n"
        f"Message-ID: {msgid}\r\nDate: {email.utils.formatdate()}\r\n\r\nhello from the tests\r\n"
    ).encode()
    return msgid, data


async def send(state: LabState, data: bytes, hop: int = 1, timeout: float = 15,
               to: str = PROBE_USER) -> tuple[dict, str]:
    """Submit to the lab's submission hop: STARTTLS, AUTH as the sender."""
    return await aiosmtplib.send(
        data,
        sender=SENDER_USER,
        recipients=[to],
        hostname="127.0.0.1",
        port=state.smtp_ports[hop - 1],
        start_tls=True,
        tls_context=tls_context(state),
        username=SENDER_USER,
        password=state.passwords[SENDER_USER],
        timeout=timeout,
    )


async def imap_login(state: LabState, tls: bool = True, user: str = PROBE_USER) -> aioimaplib.IMAP4:
    if tls:
        imap = aioimaplib.IMAP4_SSL("127.0.0.1", state.imaps_port, ssl_context=tls_context(state), timeout=15)
    else:
        imap = aioimaplib.IMAP4("127.0.0.1", state.imap_port, timeout=15)
    await imap.wait_hello_from_server()
    r = await imap.login(user, state.passwords[user])
    assert r.result == "OK", r
    return imap


async def find(imap: aioimaplib.IMAP4, msgid: str, folder: str = "INBOX") -> email.message.Message | None:
    """The message with this Message-ID in ``folder`` (headers only), or None."""
    r = await imap.select(folder)
    assert r.result == "OK", r
    r = await imap.uid_search("HEADER", "Message-ID", msgid, charset=None)
    assert r.result == "OK", r
    uids = r.lines[0].split()
    if not uids:
        return None
    r = await imap.uid("fetch", uids[0].decode(), "(UID BODY.PEEK[HEADER])")
    assert r.result == "OK", r
    block = next(bytes(x) for x in r.lines if isinstance(x, (bytes, bytearray)) and b"Received:" in x)
    return email.message_from_bytes(block, policy=email.policy.default)


async def wait_found(state: LabState, msgid: str, timeout: float = 20, tls: bool = True) -> email.message.Message:
    imap = await imap_login(state, tls=tls)
    try:
        deadline = time.monotonic() + timeout
        while True:
            msg = await find(imap, msgid)
            if msg is not None:
                return msg
            if time.monotonic() > deadline:
                raise AssertionError(f"{msgid} not in the mailbox after {timeout}s")
            await asyncio.sleep(0.2)
    finally:
        await imap.logout()


async def absent_for(state: LabState, msgid: str, seconds: float) -> bool:
    """True when the message stays out of the mailbox for ``seconds``."""
    imap = await imap_login(state)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await find(imap, msgid) is not None:
                return False
            await asyncio.sleep(0.25)
        return True
    finally:
        await imap.logout()


async def idle_sees_new_mail(state: LabState, send_one, timeout: float = 10) -> float:
    """Start IDLE, call ``send_one()``, return seconds until the EXISTS push."""
    imap = await imap_login(state)
    try:
        r = await imap.select("INBOX")
        assert r.result == "OK"
        assert imap.has_capability("IDLE")
        idle = await imap.idle_start(timeout=timeout)
        t0 = time.monotonic()
        await send_one()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            push = await imap.wait_server_push(timeout=max(0.1, deadline - time.monotonic()))
            if any(line.endswith(b"EXISTS") for line in push if isinstance(line, bytes)):
                elapsed = time.monotonic() - t0
                imap.idle_done()
                await asyncio.wait_for(idle, 10)
                return elapsed
        raise AssertionError("IDLE saw no EXISTS")
    finally:
        await imap.logout()


@contextlib.asynccontextmanager
async def running_engine(config, ready_timeout: float = 15, alerting: bool = False):
    """An Engine (no scheduler) on ``config`` with its store (``engine.store``) and an event
    subscription; with ``alerting``, the AlertEngine beside it (started first, ticking 5 Hz)."""
    from flowtui.core.alerting import AlertEngine
    from flowtui.core.engine import Engine
    from flowtui.core.events import EventBus
    from flowtui.core.storage import Store

    store = Store(config.monitor.database)
    bus = EventBus()
    events = bus.subscribe()
    alerts = AlertEngine(config, store, bus, tick_s=0.2) if alerting else None
    engine = Engine(config, store, bus)
    try:
        if alerts is not None:
            await alerts.start()
        await engine.start(schedule=False)
        await engine.wait_ready(ready_timeout)
        yield engine, events
    finally:
        await engine.stop()
        if alerts is not None:
            await alerts.stop()
        store.close()
