"""A small OAuth2 authorization server for tests, on 127.0.0.1 only.

``/token`` answers the refresh-token and client-credentials grants (RFC 6749)
with short-lived access tokens; ``/introspect`` (RFC 7662) is what the lab's
Dovecot asks about every XOAUTH2 / OAUTHBEARER login. Errors are shaped like
the Microsoft identity platform's (``AADSTS...`` descriptions).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class OAuthState:
    lifetime_s: float = 3600.0
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> user
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # client_id -> (secret, user)
    consent_missing: bool = False
    delay_s: float = 0.0
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # access token -> (user, expires)
    issued: list[str] = field(default_factory=list)
    grants: list[dict[str, str]] = field(default_factory=list)
    introspections: list[tuple[str, bool]] = field(default_factory=list)  # (token, active)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def revoke_all(self) -> None:
        with self.lock:
            self.tokens.clear()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, doc: dict) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test): fine
            pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
        st = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        if path == "/token":
            self._token(st, form)
        elif path == "/introspect":
            token = form.get("token", "")
            with st.lock:
                user, expires = st.tokens.get(token, ("", 0.0))
                active = bool(user) and time.time() < expires
                st.introspections.append((token, active))
            self._reply(200, {"active": True, "username": user} if active else {"active": False})
        else:
            self._reply(404, {"error": "not_found"})

    def _token(self, st: OAuthState, form: dict[str, str]) -> None:
        if st.delay_s:
            time.sleep(st.delay_s)
        with st.lock:
            st.grants.append(form)
            grant = form.get("grant_type")
            if st.consent_missing:
                return self._reply(400, {
                    "error": "invalid_grant",
                    "error_description": "AADSTS65001: The user or administrator has not consented to use "
                    "the application with ID 'abc'.\r\nTrace ID: 1234\r\nCorrelation ID: 5678",
                    "error_codes": [65001],
                })
            if grant == "refresh_token":
                user = st.refresh_tokens.get(form.get("refresh_token", ""))
                if user is None:
                    return self._reply(400, {
                        "error": "invalid_grant",
                        "error_description": "AADSTS70008: The provided authorization code or refresh token "
                        "has expired due to inactivity.\r\nTrace ID: 1234",
                        "error_codes": [70008],
                    })
            elif grant == "client_credentials":
                secret, user = st.clients.get(form.get("client_id", ""), ("", ""))
                if not secret or form.get("client_secret") != secret:
                    return self._reply(401, {"error": "invalid_client",
                                             "error_description": "AADSTS7000215: Invalid client secret provided."})
            else:
                return self._reply(400, {"error": "unsupported_grant_type"})
            token = "at-" + secrets.token_urlsafe(24)
            st.tokens[token] = (user, time.time() + st.lifetime_s)
            st.issued.append(token)
        self._reply(200, {"token_type": "Bearer", "access_token": token, "expires_in": st.lifetime_s})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: OAuthState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class OAuthServer:
    """``with OAuthServer() as srv:`` ``srv.url("/token")``, ``srv.state``."""

    def __init__(self, **kw) -> None:
        self.state = OAuthState(**kw)
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def __enter__(self) -> "OAuthServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
