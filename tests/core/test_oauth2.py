"""OAuth2 token sources, SASL strings, errors and config (issue 9); servers are fakes on loopback."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest

from flowtui.core import oauth2
from flowtui.core.config import load_config
from flowtui.core.errors import UserError
from flowtui.core.model import OAuth2Settings, Secret, Security, ServerSettings
from flowtui.core.oauth2 import TokenError, TokenSource, one_line, renew_margin
from flowtui.core.probes.auth import challenge_words, oauthbearer_response, xoauth2_response
from flowtui.core.probes.smtp import send_probe
from oauthserver import OAuthServer  # tests/ is on sys.path (conftest.py)


@pytest.fixture(autouse=True)
def _fresh():
    oauth2.forget_tokens()
    yield
    oauth2.forget_tokens()


# ---- SASL strings -------------------------------------------------------------


def test_xoauth2_string():
    raw = base64.b64decode(xoauth2_response("a@example.com", "tok"))
    assert raw == b"user=a@example.com\x01auth=Bearer tok\x01\x01"


def test_oauthbearer_string_is_rfc7628():
    raw = base64.b64decode(oauthbearer_response("a,b=c@example.com", "tok", "imap.example.com", 993))
    assert raw == b"n,a=a=2Cb=3Dc@example.com,\x01host=imap.example.com\x01port=993\x01auth=Bearer tok\x01\x01"


def test_challenge_words():
    b64 = base64.b64encode(b'{"status":"invalid_token","scope":"mail","schemes":"bearer"}').decode()
    assert challenge_words(b64) == "server says status=invalid_token scope=mail schemes=bearer"
    assert challenge_words("not base64!") == ""


def test_one_line_escapes_and_folds():
    assert one_line("535 a\r\n  b\x1b[31m") == "535 a b\\x1b[31m"
    assert len(one_line("x" * 1000)) == 300


def test_renew_margin():
    assert renew_margin(3600) == 300 and renew_margin(4) == 1.0 and renew_margin(60) == 6.0


# ---- token_command ----------------------------------------------------------------


def cmd_source(command: str) -> TokenSource:
    return TokenSource(OAuth2Settings(token_command=command), "u@example.com")


async def test_token_command_first_line_is_cached():
    src = cmd_source("echo tok-1; echo ignored")
    tok, fresh = await src.get()
    assert tok.value == "tok-1" and fresh and tok.expires_mono is None
    again, fresh = await src.get()
    assert again is tok and not fresh
    src.invalidate("tok-1")
    assert (await src.get())[1] is True and src.fetches == 2


async def test_token_command_json_gives_the_lifetime():
    src = cmd_source("""echo '{"access_token": "tok-j", "expires_in": 3600}'""")
    tok, _ = await src.get()
    assert tok.value == "tok-j"
    assert tok.expires_mono - tok.obtained_mono == pytest.approx(3600)
    assert tok.renew_mono == pytest.approx(tok.expires_mono - 300)


@pytest.mark.parametrize("command, words", [
    ("exit 3", "token_command: failed with exit code 3"),
    ("no-such-command-flowtui", "token_command: failed with exit code 127 (command not found)"),
    ("true", "token_command: printed nothing on its first line"),
    ("echo 'two words'", "token_command: the token contains spaces"),
    ("echo '{oops'", "token_command: printed something that starts with { but is not JSON"),
    ("""echo '{"expires_in": 5}'""", "token_command: the answer has no access_token"),
])
async def test_token_command_failures_are_one_line(command, words):
    with pytest.raises(TokenError) as info:
        await cmd_source(command).get()
    assert str(info.value).startswith(words) and "\n" not in str(info.value)


async def test_a_hanging_token_command_is_killed(monkeypatch):
    monkeypatch.setattr(oauth2, "TOKEN_COMMAND_TIMEOUT_S", 0.5)
    t0 = time.monotonic()
    with pytest.raises(TokenError, match=r"^token_command: did not finish within 0.5s \(killed\)$"):
        await cmd_source("sleep 30 & sleep 30").get()
    assert time.monotonic() - t0 < 5


# ---- token endpoint --------------------------------------------------------------


def endpoint_source(srv: OAuthServer, **kw) -> TokenSource:
    fields = {"token_url": srv.url("/token"), "client_id": "app-id", "refresh_token": Secret("rt-1", "env X")}
    fields.update(kw)
    return TokenSource(OAuth2Settings(**fields), "u@example.com")


async def test_refresh_token_flow_and_expiry():
    with OAuthServer(lifetime_s=2) as srv:
        srv.state.refresh_tokens = {"rt-1": "u@example.com"}
        src = endpoint_source(srv, scope="https://mail.google.com/")
        tok, fresh = await src.get()
        assert fresh and tok.value in srv.state.issued
        assert srv.state.grants == [{"client_id": "app-id", "grant_type": "refresh_token", "refresh_token": "rt-1",
                                     "scope": "https://mail.google.com/"}]
        assert (await src.get())[0] is tok  # cached
        await asyncio.sleep(1.1)  # 2 s life, renewed 1 s before expiry
        tok2, fresh = await src.get()
        assert fresh and tok2.value != tok.value and len(srv.state.grants) == 2


@pytest.mark.parametrize("setup, words", [
    (lambda st: None, "token endpoint 127.0.0.1 refused the refresh token (invalid_grant: AADSTS70008: The provided "
                      "authorization code or refresh token has expired due to inactivity.); it has expired or was "
                      "revoked: sign in again to get a new one"),
    (lambda st: setattr(st, "consent_missing", True), "token endpoint 127.0.0.1: consent not granted (invalid_grant: AADSTS65001"),
])
async def test_endpoint_errors_are_one_clear_line(setup, words):
    with OAuthServer() as srv:
        setup(srv.state)
        with pytest.raises(TokenError) as info:
            await endpoint_source(srv).get()
    text = str(info.value)
    assert text.startswith(words) and "\n" not in text and "\r" not in text and "Trace ID" not in text


async def test_client_credentials_wrong_secret():
    with OAuthServer() as srv:
        srv.state.clients = {"app-id": ("right", "u@example.com")}
        src = endpoint_source(srv, flow="client_credentials", refresh_token=None, client_secret=Secret("wrong", "x"))
        with pytest.raises(TokenError, match=r"refused the client \(invalid_client: AADSTS7000215.*check client_id"):
            await src.get()


async def test_endpoint_down():
    with OAuthServer() as srv:
        url = srv.url("/token")
    src = TokenSource(OAuth2Settings(token_url=url, client_id="x", refresh_token=Secret("r", "x")), "u")
    with pytest.raises(TokenError, match=r"^token endpoint 127.0.0.1: cannot connect: "):
        await src.get()


# ---- SMTP: a tenant that blocks SMTP AUTH ----------------------------------------------


async def test_smtp_auth_disabled_tenant_is_a_result_with_a_hint():
    async def handle(reader, writer):
        writer.write(b"220 fake.outlook ESMTP\r\n")
        while line := await reader.readline():
            verb = line.split()[0].upper() if line.split() else b""
            if verb == b"EHLO":
                writer.write(b"250-fake.outlook\r\n250 AUTH LOGIN XOAUTH2\r\n")
            elif verb == b"AUTH":
                writer.write(b"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
                             b"for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. "
                             b"[AM0PR01CA0001.eurprd01.prod.exchangelabs.com]\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"500 what\r\n")
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    server = ServerSettings("127.0.0.1", port, Security.NONE, "u@example.com", timeout_s=5, auth="xoauth2",
                            oauth2=OAuth2Settings(token_command="echo tok-ms"))
    try:
        out = await send_probe(server, "u@example.com", "v@example.com", b"Subject: x\r\n\r\nx\r\n")
    finally:
        srv.close()
    assert not out.ok and out.error_phase == "auth"
    assert out.error.startswith("login refused: 535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled")
    assert "enable Authenticated SMTP" in out.error and "\n" not in out.error
    assert "tok-ms" not in out.error


async def test_smtp_mechanism_not_offered():
    async def handle(reader, writer):
        writer.write(b"220 x ESMTP\r\n")
        while line := await reader.readline():
            writer.write(b"250-x\r\n250 AUTH PLAIN LOGIN\r\n" if line.upper().startswith(b"EHLO") else b"221 bye\r\n")
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    server = ServerSettings("127.0.0.1", port, Security.NONE, "u@example.com", timeout_s=5, auth="oauthbearer",
                            oauth2=OAuth2Settings(token_command="echo t"))
    try:
        out = await send_probe(server, "u@example.com", "v@example.com", b"x")
    finally:
        srv.close()
    assert out.error == "the server does not offer AUTH OAUTHBEARER (it offers: PLAIN LOGIN)"


# ---- config -----------------------------------------------------------------------


BASE = """
[[routes]]
name = "m365"
from = "a@example.com"
to = "b@example.com"
[routes.imap]
host = "imap.example.com"
username = "b@example.com"
password = "pw"
[routes.smtp]
host = "smtp.example.com"
username = "a@example.com"
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "c.toml"
    path.write_text(BASE + text)
    path.chmod(0o600)
    return load_config(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load(tmp_path, text)
    return str(info.value).split(": ", 2)[2]


def test_config_refresh_token_flow(tmp_path, monkeypatch):
    monkeypatch.setenv("RT", "secret-rt")
    c = load(tmp_path, """auth = "xoauth2"
[routes.smtp.oauth2]
token_url = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
client_id = "cid"
refresh_token_env = "RT"
scope = "https://outlook.office.com/SMTP.Send offline_access"
""")
    smtp = c.routes[0].smtp
    assert smtp.auth == "xoauth2" and smtp.password is None
    assert smtp.oauth2.refresh_token.value == "secret-rt" and smtp.oauth2.flow == "refresh_token"
    assert "secret-rt" not in repr(smtp)
    assert c.routes[0].imap.auth == "password"


def test_config_token_command(tmp_path):
    c = load(tmp_path, 'auth = "oauthbearer"\ntoken_command = "my-helper --user a"\n')
    assert c.routes[0].smtp.oauth2.token_command == "my-helper --user a"
    assert c.routes[0].smtp.oauth2.base_dir == str(tmp_path)


@pytest.mark.parametrize("text, words", [
    ('auth = "xoauth"\ntoken_command = "x"\n', 'smtp.auth: expected one of "password", "xoauth2", "oauthbearer", got "xoauth" (did you mean "xoauth2"?)'),
    ('auth = "xoauth2"\n', 'smtp.auth: auth = "xoauth2" needs a token: token_command = "..." or a [routes.smtp.oauth2] table'),
    ('auth = "xoauth2"\npassword = "x"\ntoken_command = "x"\n', 'smtp.password: not used with auth = "xoauth2"'),
    ('password = "x"\ntoken_command = "x"\n', 'smtp.token_command: only used with auth = "xoauth2" or "oauthbearer"'),
    ('auth = "xoauth2"\n[routes.smtp.oauth2]\ntoken_url = "https://x/token"\nclient_id = "c"\nrefresh_token_env = "RT"\nscpoe = "x"\n',
     'smtp.oauth2: unknown key "scpoe" (did you mean "scope"?)'),
    ('auth = "xoauth2"\n[routes.smtp.oauth2]\ntoken_url = "http://login.example.com/token"\nclient_id = "c"\nrefresh_token_env = "RT"\n',
     'smtp.oauth2.token_url: must be https://'),
    ('auth = "xoauth2"\n[routes.smtp.oauth2]\ntoken_url = "https://x/token"\nclient_id = "c"\n',
     'smtp.oauth2: flow = "refresh_token" needs refresh_token_env or refresh_token_command'),
    ('auth = "xoauth2"\n[routes.smtp.oauth2]\ntoken_url = "https://x/token"\nclient_id = "c"\nflow = "client_credentials"\n',
     'smtp.oauth2: flow = "client_credentials" needs client_secret_env or client_secret_command'),
    ('auth = "xoauth2"\n[routes.smtp.oauth2]\ntoken_url = "https://x/token"\nclient_id = "c"\nrefresh_token_env = "NOT_SET_FLOWTUI"\n',
     "smtp.oauth2.refresh_token_env: environment variable NOT_SET_FLOWTUI is not set"),
    ('auth = "xoauth2"\n[routes.smtp.oauth2]\ntoken_url = "https://x/token"\nclient_id = "c"\nrefresh_token_command = "exit 4"\n',
     "smtp.oauth2.refresh_token_command: the command failed with exit code 4"),
])
def test_config_errors_name_the_key(tmp_path, monkeypatch, text, words):
    monkeypatch.setenv("RT", "x")
    got = error(tmp_path, text)
    assert got.startswith(words), got
    assert "\n" not in got


async def test_a_hanging_token_endpoint_times_out(monkeypatch):
    monkeypatch.setattr(oauth2, "TOKEN_ENDPOINT_TIMEOUT_S", 0.5)
    with OAuthServer(delay_s=3) as srv:
        with pytest.raises(TokenError, match=r"^token endpoint 127.0.0.1: .*timed out"):
            await endpoint_source(srv).get()


def test_check_shows_the_token_source_never_a_secret(tmp_path, monkeypatch, capsys):
    import argparse

    from flowtui import checkcmd

    monkeypatch.setenv("RT", "secret-rt-value")
    (tmp_path / "c.toml").write_text(BASE + """auth = "xoauth2"
[routes.smtp.oauth2]
token_url = "https://oauth2.googleapis.com/token"
client_id = "cid"
refresh_token_env = "RT"
scope = "https://mail.google.com/"
""")
    assert checkcmd.main(argparse.Namespace(config=str(tmp_path / "c.toml"), login=False)) == 0
    out = capsys.readouterr().out
    assert "user a@example.com (xoauth2: refresh_token flow at https://oauth2.googleapis.com/token)" in out
    assert "secret-rt-value" not in out


def test_token_over_plain_text_to_a_remote_host_warns(tmp_path):
    from flowtui.core.config import config_warnings

    c = load(tmp_path, 'security = "none"\nauth = "xoauth2"\ntoken_command = "x"\n')
    assert any("the OAuth2 access token is sent unencrypted to smtp.example.com" in w for w in config_warnings(c))


async def test_a_token_command_that_floods_its_output_is_stopped():
    src = cmd_source("yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    t0 = time.monotonic()
    with pytest.raises(TokenError, match=r"token_command: printed more than 256 KiB \(killed\)"):
        await src.get()
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("expires", ["NaN", "Infinity", "-5", "0"])
async def test_an_odd_expires_in_means_no_known_lifetime(expires):
    src = cmd_source(f"""echo '{{"access_token": "tok-x", "expires_in": {expires}}}'""")
    token, _ = await src.get()
    assert token.value == "tok-x" and token.expires_mono is None


def test_a_token_url_with_a_password_is_refused_without_echoing_it(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[[routes]]\nname = "r"\nfrom = "a@example.com"\nto = "b@example.com"\n'
        '[routes.smtp]\nhost = "127.0.0.1"\n[routes.imap]\nhost = "127.0.0.1"\nusername = "u@example.com"\n'
        'auth = "xoauth2"\n[routes.imap.oauth2]\ntoken_url = "http://user:SECRETPW@127.0.0.1:18080/ok"\n'
        'client_id = "c"\nrefresh_token_env = "RT"\n'
    )
    with pytest.raises(UserError) as info:
        load_config(cfg)
    assert "imap.oauth2.token_url: must not carry a user name or password" in str(info.value)
    assert "SECRETPW" not in str(info.value)
