"""Logging in to SMTP and IMAP servers: passwords, XOAUTH2 and OAUTHBEARER (RFC 7628).

aiosmtplib has no XOAUTH2: it is spoken with ``execute_command``. aioimaplib
has ``xoauth2()`` but no OAUTHBEARER and does not answer a server's error
challenge; both mechanisms go through one AUTHENTICATE command here that does.

With OAuth2 a login is tried with the cached token; when the server refuses
it, the token is dropped and the login tried once more with a fresh one.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
import aioimaplib
import aiosmtplib
from aioimaplib.aioimaplib import Command

from flowtui.core.model import ServerSettings
from flowtui.core.oauth2 import AccessToken, one_line, token_source

class AuthRefused(Exception):
    """The server refused the login; the message is its own words (one line)."""


def _b64(data: str) -> str:
    return base64.b64encode(data.encode("utf-8")).decode("ascii")


def xoauth2_response(user: str, token: str) -> str:
    """The base64 XOAUTH2 initial response (Google / Microsoft)."""
    return _b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


def oauthbearer_response(user: str, token: str, host: str, port: int) -> str:
    """The base64 OAUTHBEARER initial response (RFC 7628 3.1): GS2 header, host, port, auth."""
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    return _b64(f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")


def initial_response(server: ServerSettings, token: str) -> str:
    if server.auth == "oauthbearer":
        return oauthbearer_response(server.username or "", token, server.host, server.port)
    return xoauth2_response(server.username or "", token)


# The client's answer to a server's error challenge: XOAUTH2 sends an empty
# response, OAUTHBEARER a single %x01 (RFC 7628 3.2.3); the server then says no.
DUMMY_RESPONSE = {"xoauth2": "", "oauthbearer": "AQ=="}


def challenge_words(b64: str) -> str:
    """What a base64 JSON error challenge says ({"status": "401", "schemes": ..., "scope": ...})."""
    try:
        doc = json.loads(base64.b64decode(b64.strip(), validate=True))
    except (binascii.Error, ValueError):
        return ""
    if not isinstance(doc, dict):
        return ""
    parts = [f"{k}={doc[k]}" for k in ("status", "scope", "schemes") if doc.get(k)]
    return one_line("server says " + " ".join(parts)) if parts else ""


def hint(words: str) -> str:
    """Advice for well-known refusals, appended to the server's words."""
    low = words.lower()
    if "5.7.139" in words or "smtpclientauthentication is disabled" in low:
        return " (SMTP AUTH is turned off for this tenant or mailbox: enable Authenticated SMTP for it in Microsoft 365)"
    if "5.7.3" in words and "authentication unsuccessful" in low:
        return " (the token was refused: check the scope, e.g. https://outlook.office.com/SMTP.Send, and the user name)"
    return ""


async def with_token(server: ServerSettings, kind: str, attempt: Callable[[str], Awaitable[object]]) -> AccessToken:
    """Run ``attempt(token)``; when the server refuses a cached token, once more with a fresh one.

    Returns the token that worked (its expiry bounds the session it opened)."""
    source = token_source(server, kind)
    token, fresh = await source.get()
    try:
        await attempt(token.value)
        return token
    except AuthRefused:
        if fresh:
            raise
        source.invalidate(token.value)
    token, _ = await source.get()
    await attempt(token.value)
    return token


# --------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------


def smtp_mechanisms(client: aiosmtplib.SMTP) -> list[str]:
    return [m.upper() for m in (client.esmtp_extensions.get("auth") or "").split()]


async def smtp_login(client: aiosmtplib.SMTP, server: ServerSettings) -> None:
    """Log in with the server's auth method; raises SMTPAuthenticationError with the server's words."""
    if server.auth == "password":
        await client.login(server.username or "", server.password.value if server.password else "")
        return
    mech = server.auth.upper()
    offered = smtp_mechanisms(client)
    if mech not in offered:
        raise aiosmtplib.SMTPException(
            f"the server does not offer AUTH {mech} (it offers: {' '.join(offered) or 'no AUTH at all'})"
        )

    async def attempt(token: str) -> None:
        resp = await client.execute_command(b"AUTH", mech.encode(), initial_response(server, token).encode())
        detail = ""
        if resp.code == 334:  # an error challenge: answer it, the refusal follows
            detail = challenge_words(resp.message)
            resp = await client.execute_command(DUMMY_RESPONSE[server.auth].encode())
        if resp.code != 235:
            words = one_line(f"{resp.code} {resp.message}") + (f" ({detail})" if detail else "")
            raise AuthRefused(words + hint(words))

    try:
        await with_token(server, "smtp", attempt)
    except AuthRefused as exc:
        raise aiosmtplib.SMTPException(f"login refused: {exc}") from None


# --------------------------------------------------------------------------
# IMAP
# --------------------------------------------------------------------------


class _Authenticate(Command):
    """AUTHENTICATE that answers the server's continuations itself.

    The first empty ``+`` gets the initial response (servers without SASL-IR);
    a ``+`` with data is an error challenge and gets the dummy response.
    """

    def __init__(self, proto, mech: str, response: str, dummy: str, sasl_ir: bool) -> None:
        args = (mech, response) if sasl_ir else (mech,)
        super().__init__("AUTHENTICATE", proto.new_tag(), *args, loop=proto.loop)
        self._proto = proto
        self._response = None if sasl_ir else response
        self._dummy = dummy
        self.challenge = ""

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        if line.startswith(b"+"):
            data = line[1:].strip().decode("ascii", errors="replace")
            if self._response is not None and not data:
                answer, self._response = self._response, None
            else:
                self.challenge = challenge_words(data)
                answer = self._dummy
            self._proto.transport.write(answer.encode("ascii") + b"\r\n")
            return
        super().append_to_resp(line, result)


async def imap_authenticate(imap: aioimaplib.IMAP4, server: ServerSettings) -> AccessToken:
    """XOAUTH2 / OAUTHBEARER login; returns the token used; raises AuthRefused with the server's words."""
    proto = imap.protocol
    mech = server.auth.upper()
    caps = {c.upper() for c in proto.capabilities}
    if f"AUTH={mech}" not in caps:
        offered = sorted(c[5:] for c in caps if c.startswith("AUTH="))
        raise AuthRefused(f"the server does not offer AUTHENTICATE {mech} (it offers: {' '.join(offered) or 'none'})")

    async def attempt(token: str) -> None:
        response = initial_response(server, token)
        cmd = _Authenticate(proto, mech, response, DUMMY_RESPONSE[server.auth], "SASL-IR" in caps)
        async with proto.state_condition:
            r = await proto.execute(cmd, scrub=response)
            if r.result == "OK":
                proto.state = aioimaplib.AUTH
            proto.state_condition.notify_all()
        if r.result != "OK":
            words = " ".join(x.decode(errors="replace") for x in r.lines if isinstance(x, bytes))
            words = one_line(words or r.result) + (f" ({cmd.challenge})" if cmd.challenge else "")
            raise AuthRefused(words)
        await proto.capability()  # the capabilities of the logged-in state (IDLE, UIDPLUS, MOVE...)

    return await with_token(server, "imap", attempt)
