"""Submitting a probe over SMTP, timing each phase. A failure is a result, not an exception."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import ssl
import time
from dataclasses import dataclass, field

import aiosmtplib

from flowtui.core.headers import valid_text
from flowtui.core.model import Security, ServerSettings
from flowtui.core.oauth2 import TokenError

_QUEUE_ID = re.compile(r"(?:queued as|queued with id|id=|\bid\b)\s*<?([A-Za-z0-9._\-]{4,64})", re.IGNORECASE)


@dataclass
class SendOutcome:
    ok: bool
    start_mono: float  # monotonic instant the connection attempt began
    accepted_mono: float | None = None  # 250 after DATA
    phases: list[tuple[str, float]] = field(default_factory=list)  # name, seconds from start
    queue_id: str | None = None
    reply: str | None = None
    error: str | None = None
    error_phase: str | None = None

    @property
    def submit_s(self) -> float | None:
        return None if self.accepted_mono is None else self.accepted_mono - self.start_mono


def tls_context(server: ServerSettings) -> ssl.SSLContext:
    """Verified by default (the system CAs, or the route's ca_file); unverified only when asked.

    One context per (verify, ca_file), shared by every connection: loading the
    system CA store for each probe was a large part of a probe's CPU time.
    """
    return _context(server.verify_tls, server.ca_file)


@functools.lru_cache(maxsize=64)
def _context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_file)


def queue_id_of(reply: str) -> str | None:
    m = _QUEUE_ID.search(reply or "")
    return m.group(1) if m else None


def _words(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, aiosmtplib.SMTPConnectError) and isinstance(cause, OSError) and cause.errno:
        return f"cannot connect: {os.strerror(cause.errno)}"
    if isinstance(exc, OSError) and exc.errno and not isinstance(exc, ssl.SSLError):
        return f"cannot connect: {os.strerror(exc.errno)}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return "; ".join(_words(e) for e in exc.recipients) or "recipient refused"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {' '.join(exc.message.split())}"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, aiosmtplib.SMTPTimeoutError)):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


async def send_probe(
    server: ServerSettings,
    mail_from: str,
    rcpt_to: str,
    data: bytes,
    local_hostname: str | None = None,
    start_mono: float | None = None,
) -> SendOutcome:
    """Connect, (STARTTLS), EHLO, AUTH, MAIL/RCPT/DATA; record when each phase ended.

    ``start_mono`` is the probe's start instant when the caller took it already.
    """
    t0 = time.monotonic() if start_mono is None else start_mono
    out = SendOutcome(ok=False, start_mono=t0)
    implicit = server.security is Security.TLS
    client = aiosmtplib.SMTP(
        hostname=server.host,
        port=server.port,
        use_tls=implicit,
        start_tls=False,
        tls_context=tls_context(server) if server.security is not Security.NONE else None,
        timeout=server.timeout_s,
        local_hostname=local_hostname,
    )
    phase = "connect"

    def mark(name: str) -> None:
        out.phases.append((name, time.monotonic() - t0))

    try:
        await client.connect()
        mark("connect")
        if implicit:
            mark("tls")
        phase = "ehlo"
        await client.ehlo()
        mark("ehlo")
        if server.security is Security.STARTTLS:
            phase = "tls"
            if not client.supports_extension("starttls"):
                raise aiosmtplib.SMTPException("the server does not offer STARTTLS (route requires it)")
            await client.starttls()
            await client.ehlo()
            mark("tls")
        if server.username:
            phase = "auth"
            from flowtui.core.probes.auth import smtp_login

            await smtp_login(client, server)
            mark("auth")
        phase = "data"
        _, reply = await client.sendmail(mail_from, [rcpt_to], data)
        out.accepted_mono = time.monotonic()
        mark("data_accepted")
        out.ok = True
        out.reply = valid_text(" ".join(reply.split()))
        out.queue_id = queue_id_of(out.reply)
    except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError, ValueError, TokenError) as exc:
        out.error = valid_text(_words(exc))  # servers may send bytes that are not UTF-8
        out.error_phase = phase
    finally:
        try:
            if client.is_connected:
                await asyncio.wait_for(client.quit(), 5)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
    return out
