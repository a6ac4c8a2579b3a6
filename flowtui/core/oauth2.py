"""OAuth2 access tokens for XOAUTH2 / OAUTHBEARER logins, held in memory only.

A :class:`TokenSource` hands out the access token of one server: from the
server's ``token_command``, or from its token endpoint (the refresh-token flow
of the Microsoft identity platform and Google, or Microsoft's
client-credentials flow). The token is cached until shortly before it expires
(``expires_in``), and dropped at once when a server refuses it, so the next
login fetches a fresh one.

A token is never written anywhere: not to disk, the database, a log line or
an error message. Failures are :class:`TokenError` with one line meant for
the user (the endpoint's own error code and description, escaped), such as::

    token endpoint login.microsoftonline.com refused the refresh token (invalid_grant: AADSTS70008: ...):
    it has expired or was revoked; sign in again to get a new one
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from dataclasses import dataclass, field

from flowtui.core.model import OAuth2Settings, ServerSettings

# How long a token_command may run; a module constant so tests can shorten it.
TOKEN_COMMAND_TIMEOUT_S = 10.0
# How long a token endpoint may take to answer.
TOKEN_ENDPOINT_TIMEOUT_S = 20.0
# A token_command that prints a bare token says nothing of its lifetime: it is
# run again for logins after this long (a running IMAP session keeps its login).
COMMAND_TOKEN_TTL_S = 300.0
MAX_TOKEN_CHARS = 16384
MAX_COMMAND_OUTPUT = 256 * 1024  # what a token_command may print (a JSON answer with a token)


class TokenError(Exception):
    """No access token could be had; the message is one line for the user, without secrets."""


def one_line(text: str, limit: int = 300) -> str:
    """Server or endpoint words made safe for one line: control characters escaped, spaces folded."""
    text = " ".join(str(text).split())
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def renew_margin(lifetime_s: float) -> float:
    """How long before expiry a token counts as expired: 10% of its life, 1 s to 5 min."""
    return min(300.0, max(1.0, lifetime_s * 0.1))


@dataclass
class AccessToken:
    value: str = field(repr=False)
    obtained_mono: float
    expires_mono: float | None  # None: unknown (a bare token from a command)

    @property
    def renew_mono(self) -> float | None:
        """When connections logged in with it should log in again with a fresh one."""
        if self.expires_mono is None:
            return None
        return self.expires_mono - renew_margin(self.expires_mono - self.obtained_mono)

    def usable(self, now: float) -> bool:
        if self.expires_mono is None:
            return now - self.obtained_mono < COMMAND_TOKEN_TTL_S
        return now < self.renew_mono  # type: ignore[operator]


class TokenSource:
    """The access token of one account; one per (settings, username) and event loop."""

    def __init__(self, settings: OAuth2Settings, username: str | None, where: str = "") -> None:
        self.settings = settings
        self.username = username
        self.where = where  # "smtp smtp.example.com" etc., for messages
        self._token: AccessToken | None = None
        self._refresh_token = settings.refresh_token.value if settings.refresh_token else None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many tokens were obtained (tests, status)

    @property
    def current(self) -> AccessToken | None:
        return self._token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (the server refused it): the next get() fetches a fresh one."""
        if self._token is not None and (token is None or self._token.value == token):
            self._token = None

    async def get(self) -> tuple[AccessToken, bool]:
        """A usable token, and whether it was fetched just now (a fresh one is not retried)."""
        async with self._lock:
            now = time.monotonic()
            if self._token is not None and self._token.usable(now):
                return self._token, False
            self._token = None
            if self.settings.token_command:
                token = await self._from_command()
            else:
                token = await asyncio.to_thread(self._from_endpoint)
            self.fetches += 1
            self._token = token
            return token, True

    # ---- token_command -----------------------------------------------------

    async def _from_command(self) -> AccessToken:
        command = self.settings.token_command or ""
        try:
            proc = await asyncio.create_subprocess_exec(
                "sh", "-c", command,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
                cwd=self.settings.base_dir or None,
            )
        except OSError as exc:
            raise TokenError(f"token_command: could not run the command ({exc.strerror or type(exc).__name__})") from None
        started = time.monotonic()
        try:
            out = await asyncio.wait_for(_read_capped(proc, MAX_COMMAND_OUTPUT), TOKEN_COMMAND_TIMEOUT_S)
        except _TooMuch:
            _kill_group(proc.pid)
            await proc.communicate()  # read the pipe to its end: wait() alone can hang on a full, paused pipe
            raise TokenError(f"token_command: printed more than {MAX_COMMAND_OUTPUT // 1024} KiB (killed); "
                             "a token is one line") from None
        except (TimeoutError, asyncio.TimeoutError):
            _kill_group(proc.pid)
            await proc.wait()
            raise TokenError(f"token_command: did not finish within {TOKEN_COMMAND_TIMEOUT_S:g}s (killed)") from None
        except asyncio.CancelledError:
            _kill_group(proc.pid)
            raise
        if proc.returncode != 0:
            if proc.returncode < 0:
                raise TokenError(f"token_command: killed by signal {-proc.returncode}")
            hint = {126: " (not executable)", 127: " (command not found)"}.get(proc.returncode, "")
            raise TokenError(f"token_command: failed with exit code {proc.returncode}{hint}")
        text = out.decode("utf-8", errors="replace").strip()
        if text.startswith("{"):  # {"access_token": ..., "expires_in": ...} as a token endpoint says
            try:
                doc = json.loads(text)
            except ValueError:
                raise TokenError("token_command: printed something that starts with { but is not JSON") from None
            return self._token_from(doc, started, "token_command")
        value = text.splitlines()[0].strip() if text else ""
        if not value:
            raise TokenError("token_command: printed nothing on its first line")
        _check_token(value, "token_command")
        return AccessToken(value, started, None)

    # ---- token endpoint --------------------------------------------------------

    def _from_endpoint(self) -> AccessToken:
        s = self.settings
        form = {"client_id": s.client_id or ""}
        if s.flow == "client_credentials":
            form["grant_type"] = "client_credentials"
        else:
            form["grant_type"] = "refresh_token"
            form["refresh_token"] = self._refresh_token or ""
        if s.client_secret is not None:
            form["client_secret"] = s.client_secret.value
        if s.scope:
            form["scope"] = s.scope
        started = time.monotonic()
        status, doc = _post_form(s.token_url or "", form, s.verify_tls)
        host = urllib.parse.urlsplit(s.token_url or "").hostname or "?"
        if status != 200 or "error" in doc:
            raise TokenError(_endpoint_error(host, s.flow, status, doc))
        token = self._token_from(doc, started, f"token endpoint {host}")
        rotated = doc.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            self._refresh_token = rotated  # Microsoft rotates refresh tokens: keep the new one (in memory)
        return token

    @staticmethod
    def _token_from(doc: object, started: float, what: str) -> AccessToken:
        if not isinstance(doc, dict) or not isinstance(doc.get("access_token"), str) or not doc["access_token"]:
            raise TokenError(f"{what}: the answer has no access_token")
        value = doc["access_token"]
        _check_token(value, what)
        expires = doc.get("expires_in")
        if isinstance(expires, str) and expires.isdigit():
            expires = int(expires)
        if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not math.isfinite(expires) \
                or expires <= 0:
            return AccessToken(value, started, None)
        return AccessToken(value, started, started + float(expires))


class _TooMuch(Exception):
    pass


async def _read_capped(proc: asyncio.subprocess.Process, limit: int) -> bytes:
    """The command's stdout, up to ``limit`` bytes (more raises _TooMuch); then its exit."""
    assert proc.stdout is not None
    chunks: list[bytes] = []
    size = 0
    while chunk := await proc.stdout.read(65536):
        size += len(chunk)
        if size > limit:
            raise _TooMuch
        chunks.append(chunk)
    await proc.wait()
    return b"".join(chunks)


def _check_token(value: str, what: str) -> None:
    if len(value) > MAX_TOKEN_CHARS:
        raise TokenError(f"{what}: the token is {len(value)} characters long (at most {MAX_TOKEN_CHARS})")
    if any(not (33 <= ord(c) < 127) for c in value):
        raise TokenError(f"{what}: the token contains spaces, control or non-ASCII characters")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the whole group: a grandchild may hold stdout open
    except (ProcessLookupError, PermissionError):
        pass


def _is_loopback_host(host: str | None) -> bool:
    import ipaddress

    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _post_form(url: str, form: dict[str, str], verify: bool) -> tuple[int, dict]:
    """POST a form; (HTTP status, JSON object answered). Runs in a thread."""
    host = urllib.parse.urlsplit(url).hostname
    data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
        "User-Agent": "flowtui",
    })
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=ctx)]
    if _is_loopback_host(host):
        handlers.append(urllib.request.ProxyHandler({}))  # a loopback endpoint is never proxied
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=TOKEN_ENDPOINT_TIMEOUT_S) as resp:
            status, body = resp.status, resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(1 << 20)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            why = f"TLS certificate not trusted: {reason.verify_message}"
        elif isinstance(reason, OSError) and reason.strerror:
            why = reason.strerror
        else:
            why = str(reason)
        raise TokenError(f"token endpoint {host}: cannot connect: {one_line(why)}") from None
    except (TimeoutError, OSError) as exc:
        raise TokenError(f"token endpoint {host}: {'timed out' if isinstance(exc, TimeoutError) else one_line(str(exc))}") from None
    try:
        doc = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise TokenError(f"token endpoint {host}: HTTP {status}, and the answer is not a JSON object")
    return status, doc


def _endpoint_error(host: str, flow: str, status: int, doc: dict) -> str:
    """One line for an OAuth2 error answer (RFC 6749 5.2), with what to do about it."""
    code = str(doc.get("error") or f"HTTP {status}")
    desc = str(doc.get("error_description") or "").strip().splitlines()
    words = one_line(f"{code}: {desc[0]}" if desc else code, 240)
    codes = " ".join(str(c) for c in doc.get("error_codes") or [])
    text = f"{code} {' '.join(desc)} {codes}"
    where = f"token endpoint {host}"
    if code in ("consent_required", "interaction_required") or "AADSTS65001" in text or "65001" in codes.split():
        return (f"{where}: consent not granted ({words}); an administrator or the user must consent "
                "to the app's scopes (e.g. SMTP.Send, IMAP.AccessAsUser.All) first")
    if code == "invalid_grant":
        if flow == "refresh_token":
            return f"{where} refused the refresh token ({words}); it has expired or was revoked: sign in again to get a new one"
        return f"{where} refused the grant ({words})"
    if code == "invalid_client" or code == "unauthorized_client":
        return f"{where} refused the client ({words}); check client_id and the client secret"
    if code == "invalid_scope":
        return f"{where} refused the scope ({words}); check scope"
    return f"{where}: HTTP {status}: {words}"


# One source per account and event loop (an asyncio.Lock belongs to one loop).
_SOURCES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict] = weakref.WeakKeyDictionary()


def token_source(server: ServerSettings, kind: str = "") -> TokenSource:
    """The shared token source of a server that logs in with OAuth2 (in this event loop)."""
    if server.oauth2 is None:
        raise ValueError("the server does not log in with OAuth2")
    loop = asyncio.get_running_loop()
    sources = _SOURCES.setdefault(loop, {})
    key = (server.oauth2, server.username)
    if key not in sources:
        sources[key] = TokenSource(server.oauth2, server.username, f"{kind} {server.host}".strip())
    return sources[key]


def forget_tokens() -> None:
    """Drop every cached token (tests; a config reload)."""
    _SOURCES.clear()
