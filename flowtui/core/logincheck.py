"""Log in to a route's servers and say what they offer (``flowtui check --login``).

For each SMTP and IMAP server: connect, (STARTTLS), read the capabilities
that matter to flowtui, log in as configured (password, XOAUTH2 or
OAUTHBEARER), log out. No mail is sent, no folder is selected: nothing in
any mailbox is touched. A refusal is reported in the server's own words,
escaped onto one line.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aioimaplib
import aiosmtplib

from flowtui.core.model import Config, ImapSettings, Security, ServerSettings
from flowtui.core.oauth2 import TokenError, one_line

IMAP_WANTED = ("IDLE", "UIDPLUS", "SPECIAL-USE", "MOVE")


@dataclass(frozen=True)
class LoginReport:
    kind: str  # "smtp" | "imap"
    server: ServerSettings
    ok: bool  # logged in (or connected, where no login is configured)
    logged_in: bool
    has: tuple[str, ...] = ()  # the capabilities that matter that the server offers
    lacks: tuple[str, ...] = ()  # ... and those it does not
    mechanisms: tuple[str, ...] = ()  # AUTH mechanisms offered (after TLS)
    error: str | None = None  # the server's words (one line, escaped)
    phase: str | None = None  # where it failed: connect, tls, auth

    @property
    def where(self) -> str:
        s = self.server
        return f"{self.kind} {s.host}:{s.port} {s.security.value}"


async def check_smtp(server: ServerSettings) -> LoginReport:
    from flowtui.core.probes.auth import smtp_login, smtp_mechanisms
    from flowtui.core.probes.smtp import _words, tls_context

    implicit = server.security is Security.TLS
    client = aiosmtplib.SMTP(
        hostname=server.host, port=server.port, use_tls=implicit, start_tls=False,
        tls_context=tls_context(server) if server.security is not Security.NONE else None,
        timeout=server.timeout_s,
    )
    has: list[str] = []
    mechanisms: tuple[str, ...] = ()
    phase = "connect"
    try:
        await client.connect()
        await client.ehlo()
        if client.supports_extension("starttls"):
            has.append("STARTTLS")
        if server.security is Security.STARTTLS:
            phase = "tls"
            if not client.supports_extension("starttls"):
                raise aiosmtplib.SMTPException("the server does not offer STARTTLS (the route requires it)")
            await client.starttls()
            await client.ehlo()
        mechanisms = tuple(smtp_mechanisms(client))
        if server.username:
            phase = "auth"
            await smtp_login(client, server)
        lacks = () if has or implicit else ("STARTTLS",)
        return LoginReport("smtp", server, True, bool(server.username), tuple(has), lacks, mechanisms)
    except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError, ValueError, TokenError) as exc:
        return LoginReport("smtp", server, False, False, tuple(has), (), mechanisms,
                           one_line(_words(exc)), phase)
    finally:
        try:
            if client.is_connected:
                await asyncio.wait_for(client.quit(), 5)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


async def check_imap(server: ImapSettings) -> LoginReport:
    from flowtui.core.probes.auth import AuthRefused, imap_authenticate
    from flowtui.core.probes.imap import LoginFailed, starttls
    from flowtui.core.probes.smtp import tls_context

    imap = aioimaplib.IMAP4(
        server.host, server.port, timeout=server.timeout_s,
        ssl_context=tls_context(server) if server.security is Security.TLS else None,
    )
    phase = "connect"
    pre: set[str] = set()
    caps: set[str] = set()
    try:
        await imap.wait_hello_from_server()
        pre = {c.upper() for c in imap.protocol.capabilities}
        if server.security is Security.STARTTLS:
            phase = "tls"
            await starttls(imap, server)
        caps = {c.upper() for c in imap.protocol.capabilities}
        mechanisms = tuple(sorted(c[5:] for c in caps if c.startswith("AUTH=")))
        logged_in = False
        if server.username:
            phase = "auth"
            if server.auth == "password":
                r = await imap.login(server.username, server.password.value if server.password else "")
                if r.result != "OK":
                    words = " ".join(x.decode(errors="replace") for x in r.lines if isinstance(x, bytes))
                    raise AuthRefused(words or r.result)
            else:
                await imap_authenticate(imap, server)
            logged_in = True
            caps = {c.upper() for c in imap.protocol.capabilities}
        has = ["STARTTLS"] if "STARTTLS" in pre else []
        has += [c for c in IMAP_WANTED if c in caps]
        lacks = [c for c in IMAP_WANTED if c not in caps]
        return LoginReport("imap", server, True, logged_in, tuple(has), tuple(lacks), mechanisms)
    except AuthRefused as exc:
        return _imap_failed(server, pre | caps, f"login refused: {exc}", phase)
    except (LoginFailed, TokenError) as exc:
        return _imap_failed(server, pre | caps, str(exc), phase)
    except (aioimaplib.Abort, aioimaplib.Error, OSError, TimeoutError, asyncio.TimeoutError, ssl.SSLError) as exc:
        words = f"cannot connect: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            words = "timed out"
        return _imap_failed(server, pre | caps, words, phase)
    finally:
        try:
            if imap.protocol is not None and imap.protocol.state not in ("LOGOUT", "CONNECTED"):
                await asyncio.wait_for(imap.logout(), 5)
        except Exception:
            pass
        try:
            if imap.protocol is not None and imap.protocol.transport is not None:
                imap.protocol.transport.close()
        except Exception:
            pass


def _imap_failed(server: ImapSettings, caps: set[str], words: str, phase: str) -> LoginReport:
    mechanisms = tuple(sorted(c[5:] for c in caps if c.startswith("AUTH=")))
    has = tuple((["STARTTLS"] if "STARTTLS" in caps else []) + [c for c in IMAP_WANTED if c in caps])
    return LoginReport("imap", server, False, False, has, (), mechanisms, one_line(words), phase)


async def check_logins(config: Config) -> list[tuple[str, LoginReport]]:
    """(route name, report) for every server of every route (SMTP, IMAP, the bounce
    mailbox) and the [dmarc] mailbox; a server shared by routes is tried once."""
    done: dict[tuple, asyncio.Task[LoginReport]] = {}
    out = []
    servers = [(route.name, kind, server) for route in config.routes
               for kind, server in (("smtp", route.smtp), ("imap", route.imap), ("imap", route.bounces))
               if server is not None]
    if config.dmarc is not None:
        servers.append(("[dmarc]", "imap", config.dmarc.imap))
    for name, kind, server in servers:
        key = (kind, server)
        if key not in done:
            coro = check_smtp(server) if kind == "smtp" else check_imap(server)  # type: ignore[arg-type]
            done[key] = asyncio.ensure_future(coro)
        out.append((name, done[key]))
    return [(name, await task) for name, task in out]
