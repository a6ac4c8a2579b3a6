"""XOAUTH2 and OAUTHBEARER against real servers (issue 9).

Dovecot checks every token with an OAuth2 passdb that asks an introspection
endpoint served by the test (loopback only); Postfix submission authenticates
through Dovecot SASL, so SMTP AUTH goes the same way. The test's token
endpoint hands out short-lived tokens, which forces refreshes.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w

from conftest import need_real_mail
from flowtui.core import oauth2
from flowtui.core.config import load_config
from flowtui.core.engine import Engine
from flowtui.core.events import EventBus, MailboxStateChanged
from flowtui.core.model import ProbeState
from flowtui.core.probes.imap import open_connection
from flowtui.core.probes.smtp import send_probe
from flowtui.core.storage import Store
from flowtui.lab import postfix
from flowtui.lab.common import PROBE_USER, SENDER_USER, LabState
from integration.labproc import flowtui
from mail import make_message, running_engine
from oauthserver import OAuthServer

pytestmark = pytest.mark.realmail

RT_SENDER, RT_PROBE = "rt-sender-" + "x" * 20, "rt-probe-" + "y" * 20


@pytest.fixture(scope="module")
def oauth():
    with OAuthServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def lab(oauth):
    need_real_mail()
    d = Path(tempfile.mkdtemp(prefix="flowtui-oauth-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield postfix.up(str(d), 2, oauth2_introspection_url=oauth.url("/introspect"))
    finally:
        if (d / "lab.json").exists():
            postfix.down(str(d))
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh(oauth, monkeypatch):
    """Each test: a clean authorization server, known refresh tokens, no cached tokens."""
    st = oauth.state
    with st.lock:
        st.lifetime_s = 3600.0
        st.consent_missing = False
        st.refresh_tokens = {RT_SENDER: SENDER_USER, RT_PROBE: PROBE_USER}
        st.clients = {"app-id": ("app-secret-zzzzzzzz", SENDER_USER)}
        st.tokens.clear()
        st.issued.clear()
        st.grants.clear()
        st.introspections.clear()
    monkeypatch.setenv("FLOWTUI_T_RT_SENDER", RT_SENDER)
    monkeypatch.setenv("FLOWTUI_T_RT_PROBE", RT_PROBE)
    monkeypatch.setenv("FLOWTUI_T_APP_SECRET", "app-secret-zzzzzzzz")
    oauth2.forget_tokens()
    yield


def oauth_table(srv: OAuthServer, env: str, scope: str = "https://outlook.office.com/SMTP.Send offline_access") -> dict:
    return {"token_url": srv.url("/token"), "client_id": "app-id", "refresh_token_env": env, "scope": scope}


def write_config(state: LabState, srv: OAuthServer, path: Path, smtp_auth="xoauth2", imap_auth="oauthbearer",
                 smtp_oauth=None, imap_oauth=None, **route) -> Path:
    doc = tomllib.loads((Path(state.dir) / "lab.toml").read_text())
    doc["monitor"]["database"] = str(path.with_suffix(".db"))
    r = doc["routes"][0]
    r.update(route)
    for kind, auth, table, env in (("smtp", smtp_auth, smtp_oauth, "FLOWTUI_T_RT_SENDER"),
                                   ("imap", imap_auth, imap_oauth, "FLOWTUI_T_RT_PROBE")):
        if auth == "password":
            continue
        r[kind].pop("password")
        r[kind]["auth"] = auth
        if isinstance(table, str):
            r[kind]["token_command"] = table
        else:
            r[kind]["oauth2"] = table or oauth_table(srv, env)
    r["smtp"]["ca_file"] = r["imap"]["ca_file"] = str(Path(state.dir) / "tls" / "cert.pem")
    path.write_text(tomli_w.dumps(doc))
    path.chmod(0o600)
    return path


def secrets_of(srv: OAuthServer) -> list[bytes]:
    """Every token and secret of the test, and the base64 forms they travel in."""
    values = list(srv.state.issued) + [RT_SENDER, RT_PROBE, "app-secret-zzzzzzzz"]
    out = []
    for v in values:
        out.append(v.encode())
        for user in (SENDER_USER, PROBE_USER):
            out.append(base64.b64encode(f"user={user}\x01auth=Bearer {v}\x01\x01".encode()))
    return out


def assert_nowhere(srv: OAuthServer, *texts: str | bytes, files: tuple[Path, ...] = ()) -> None:
    blobs = [t.encode() if isinstance(t, str) else t for t in texts]
    blobs += [f.read_bytes() for f in files if f.exists()]
    for secret in secrets_of(srv):
        for blob in blobs:
            assert secret not in blob


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
async def test_smtp_and_imap_log_in_with_tokens_the_server_checks(lab, oauth, tmp_path, mech):
    need_real_mail()
    config = load_config(write_config(lab, oauth, tmp_path / "c.toml", smtp_auth=mech, imap_auth=mech))
    route = config.routes[0]
    out = await send_probe(route.smtp, SENDER_USER, PROBE_USER, make_message()[1])
    assert out.ok, out.error
    assert [n for n, _ in out.phases][:4] == ["connect", "ehlo", "tls", "auth"]
    imap = await open_connection(route.imap)
    try:
        assert imap.protocol.state == "AUTH"
        assert {"IDLE", "UIDPLUS"} <= imap.protocol.capabilities  # the logged-in capabilities
    finally:
        await imap.logout()
    # two refresh grants (one per account), and Dovecot asked about both tokens
    assert [g["grant_type"] for g in oauth.state.grants] == ["refresh_token", "refresh_token"]
    assert {g["refresh_token"] for g in oauth.state.grants} == {RT_SENDER, RT_PROBE}
    assert {t for t, active in oauth.state.introspections if active} == set(oauth.state.issued)


async def test_client_credentials_flow(lab, oauth, tmp_path):
    need_real_mail()
    table = {"token_url": oauth.url("/token"), "client_id": "app-id", "client_secret_env": "FLOWTUI_T_APP_SECRET",
             "flow": "client_credentials", "scope": "https://outlook.office365.com/.default"}
    config = load_config(write_config(lab, oauth, tmp_path / "c.toml", smtp_oauth=table, imap_auth="password"))
    out = await send_probe(config.routes[0].smtp, SENDER_USER, PROBE_USER, make_message()[1])
    assert out.ok, out.error
    assert oauth.state.grants == [{"client_id": "app-id", "grant_type": "client_credentials",
                                   "client_secret": "app-secret-zzzzzzzz", "scope": "https://outlook.office365.com/.default"}]


async def test_a_refused_cached_token_is_replaced_once(lab, oauth, tmp_path):
    need_real_mail()
    config = load_config(write_config(lab, oauth, tmp_path / "c.toml"))
    route = config.routes[0]
    assert (await send_probe(route.smtp, SENDER_USER, PROBE_USER, make_message()[1])).ok
    (await open_connection(route.imap)).protocol.transport.close()
    assert len(oauth.state.issued) == 2
    oauth.state.revoke_all()  # the server forgets them: the cached tokens are refused now
    out = await send_probe(route.smtp, SENDER_USER, PROBE_USER, make_message()[1])
    assert out.ok, out.error
    imap = await open_connection(route.imap)
    await imap.logout()
    assert len(oauth.state.issued) == 4  # exactly one fresh token per account
    refused = [t for t, active in oauth.state.introspections if not active]
    assert refused == oauth.state.issued[:2]


async def test_a_token_the_server_refuses_gives_its_words(lab, oauth, tmp_path):
    need_real_mail()
    config = load_config(write_config(lab, oauth, tmp_path / "c.toml", smtp_oauth="echo not-a-valid-token",
                                      imap_oauth="echo not-a-valid-token"))
    route = config.routes[0]
    out = await send_probe(route.smtp, SENDER_USER, PROBE_USER, make_message()[1])
    assert not out.ok and out.error_phase == "auth"
    assert out.error.startswith("login refused: 535 5.7.8") and "\n" not in out.error
    with pytest.raises(Exception) as info:
        await open_connection(route.imap)
    assert "AUTHENTICATIONFAILED" in str(info.value) and "invalid_token" in str(info.value)


async def test_short_lived_tokens_are_refreshed_and_idle_sessions_renewed(lab, oauth, tmp_path, caplog):
    """Tokens live 4 s: probes keep arriving over IDLE while the watcher logs in again in time."""
    need_real_mail()
    caplog.set_level(logging.DEBUG)
    oauth.state.lifetime_s = 4.0
    cfg = write_config(lab, oauth, tmp_path / "c.toml", timeout="20s")
    config = load_config(cfg)
    store = Store(config.monitor.database)
    bus = EventBus()
    events = bus.subscribe()
    engine = Engine(config, store, bus)
    results = []
    try:
        await engine.start(schedule=False)
        await engine.wait_ready(15)
        watcher = engine.route_watcher[config.routes[0].name]
        t0 = time.monotonic()
        while time.monotonic() - t0 < 11:
            results.append(await engine.probe_once(config.routes[0], timeout=15))
            await asyncio.sleep(1.5)
        relogins = watcher.relogins
        states = [e.state for e in events.drain() if isinstance(e, MailboxStateChanged)]
    finally:
        await engine.stop()
        store.close()
    assert [r.state for r in results] == [ProbeState.DELIVERED] * len(results), [(r.state, r.error) for r in results]
    assert any(r.detect_uncertainty_s is not None and r.detect_uncertainty_s < 1.0 for r in results[1:])
    assert relogins >= 2  # the IMAP session was renewed before each token ran out
    assert "reconnecting" not in states and "down" not in states
    # both accounts went back to the token endpoint more than once
    sender = [g for g in oauth.state.grants if g.get("refresh_token") == RT_SENDER]
    probe = [g for g in oauth.state.grants if g.get("refresh_token") == RT_PROBE]
    assert len(sender) >= 2 and len(probe) >= 3
    # no token was ever refused: each was renewed before it expired
    assert all(active for _, active in oauth.state.introspections)
    # never on disk, in the database or in a log line
    db = Path(config.monitor.database)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert_nowhere(oauth, logs, files=(db, db.with_name(db.name + "-wal"), Path(config.monitor.secret_file), cfg))


async def test_expired_refresh_token_is_a_one_line_error_and_an_alert(lab, oauth, tmp_path, monkeypatch, caplog):
    need_real_mail()
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FLOWTUI_T_RT_SENDER", "rt-revoked")
    monkeypatch.setenv("FLOWTUI_T_RT_PROBE", "rt-revoked")
    config = load_config(write_config(lab, oauth, tmp_path / "c.toml", timeout="5s"))
    async with running_engine(config, alerting=True) as (engine, events):
        result = await engine.probe_once(config.routes[0])
        await asyncio.sleep(0.6)
        states = [e for e in events.drain() if isinstance(e, MailboxStateChanged)]
        fired = await asyncio.to_thread(engine.store.alerts, state="fired")
    assert result.state is ProbeState.SEND_FAILED and result.error_phase == "auth"
    assert "\n" not in result.error
    assert "refused the refresh token (invalid_grant: AADSTS70008" in result.error
    assert "sign in again" in result.error
    assert any(a.rule == "send_failed" and "invalid_grant" in a.message for a in fired), fired
    down = [e for e in states if e.state == "down"]
    assert down and "invalid_grant" in down[0].detail and "\n" not in down[0].detail


async def test_consent_not_granted(lab, oauth, tmp_path):
    need_real_mail()
    oauth.state.consent_missing = True
    config = load_config(write_config(lab, oauth, tmp_path / "c.toml"))
    out = await send_probe(config.routes[0].smtp, SENDER_USER, PROBE_USER, make_message()[1])
    assert not out.ok and "consent not granted" in out.error and "AADSTS65001" in out.error
    assert "\n" not in out.error and "Trace ID" not in out.error


def _maildir(state: LabState) -> list[tuple[str, int]]:
    base = Path(state.dir) / "mail"
    return sorted((str(p.relative_to(base)), p.stat().st_size) for p in base.rglob("*") if p.is_file()
                  and ("/cur/" in str(p) or "/new/" in str(p)))


def test_check_login_lists_capabilities_through_the_cli(lab, oauth, tmp_path):
    need_real_mail()
    cfg = write_config(lab, oauth, tmp_path / "c.toml")
    before = _maildir(lab)
    proc = flowtui("check", "-c", str(cfg), "--login")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    smtp_line = next(line for line in out.splitlines() if "  smtp 127.0.0.1" in line and "login" in line)
    imap_line = next(line for line in out.splitlines() if "  imap 127.0.0.1" in line and "login" in line)
    assert f"login ok as {SENDER_USER} (xoauth2)" in smtp_line
    assert f"login ok as {PROBE_USER} (oauthbearer)" in imap_line
    lines = out.splitlines()
    smtp_offers = lines[lines.index(smtp_line) + 1]
    imap_offers = lines[lines.index(imap_line) + 1]
    assert "has STARTTLS" in smtp_offers and "XOAUTH2" in smtp_offers and "OAUTHBEARER" in smtp_offers
    for cap in ("IDLE", "UIDPLUS", "SPECIAL-USE", "MOVE"):
        assert cap in imap_offers.split("; AUTH")[0]
    assert "lacks" not in imap_offers
    assert "XOAUTH2" in imap_offers and "OAUTHBEARER" in imap_offers and "PLAIN" in imap_offers
    assert _maildir(lab) == before  # nothing in the mailbox was touched
    assert_nowhere(oauth, proc.stdout, proc.stderr)
    assert oauth.state.issued  # it really logged in with tokens


def test_check_login_fails_with_the_servers_words(lab, oauth, tmp_path):
    need_real_mail()
    cfg = write_config(lab, oauth, tmp_path / "c.toml", smtp_oauth="echo wrong-token", imap_auth="password")
    doc = tomllib.loads(cfg.read_text())
    doc["routes"][0]["imap"]["password"] = "not-the-password"
    cfg.write_text(tomli_w.dumps(doc))
    proc = flowtui("check", "-c", str(cfg), "--login")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    smtp = next(line for line in lines if "  smtp 127.0.0.1" in line)
    imap = next(line for line in lines if "  imap 127.0.0.1" in line)
    assert "login FAILED (xoauth2) at auth: login refused: 535 5.7.8 Error: authentication failed" in smtp
    assert "login FAILED (password) at auth: login refused: [AUTHENTICATIONFAILED]" in imap
    assert "flowtui: 2 logins failed" in proc.stderr
    assert "not-the-password" not in proc.stdout + proc.stderr


def test_check_login_with_passwords_on_the_lab_config(lab):
    """The lab's own lab.toml (password logins) through the CLI: both logins work."""
    need_real_mail()
    proc = flowtui("check", "-c", str(Path(lab.dir) / "lab.toml"), "--login")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"login ok as {SENDER_USER} (password)" in proc.stdout
    assert f"login ok as {PROBE_USER} (password)" in proc.stdout
    assert "IDLE UIDPLUS SPECIAL-USE MOVE" in proc.stdout
    for password in lab.passwords.values():
        assert password not in proc.stdout + proc.stderr


def test_lab_cli_takes_the_introspection_url(oauth, lab_dir):
    need_real_mail()
    proc = flowtui("lab", "up", "--dir", str(lab_dir), "--hops", "2", "--oauth2-introspection-url", oauth.url("/introspect"))
    try:
        assert proc.returncode == 0, proc.stderr
        conf = (lab_dir / "dovecot" / "dovecot.conf").read_text()
        assert "driver = oauth2" in conf and "xoauth2 oauthbearer" in conf
        assert f"introspection_url = {oauth.url('/introspect')}" in (lab_dir / "dovecot" / "oauth2.conf.ext").read_text()
    finally:
        flowtui("lab", "down", "--dir", str(lab_dir))
    bad = flowtui("lab", "up", "--dir", str(lab_dir / "x"), "--oauth2-introspection-url", "http://192.0.2.1/introspect")
    assert bad.returncode == 2 and "must be on loopback" in bad.stderr


async def test_watcher_logs_in_again_with_a_fresh_token_when_the_server_refuses_the_cached_one(lab, oauth, tmp_path):
    """The server drops the session and forgets the token: the reconnect gets a fresh one."""
    need_real_mail()
    config = load_config(write_config(lab, oauth, tmp_path / "c.toml", timeout="15s"))
    store = Store(config.monitor.database)
    bus = EventBus()
    engine = Engine(config, store, bus)
    try:
        await engine.start(schedule=False)
        await engine.wait_ready(15)
        watcher = engine.route_watcher[config.routes[0].name]
        assert watcher.state == "idle"
        before = len([g for g in oauth.state.grants if g.get("refresh_token") == RT_PROBE])
        oauth.state.revoke_all()
        old = watcher._imap
        old.protocol.transport.abort()  # the session ends (as when the server drops it)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (watcher.state == "idle" and watcher._imap not in (None, old)):
            await asyncio.sleep(0.2)
        result = await engine.probe_once(config.routes[0], timeout=15)
    finally:
        await engine.stop()
        store.close()
    after = len([g for g in oauth.state.grants if g.get("refresh_token") == RT_PROBE])
    assert after == before + 1
    assert result.state is ProbeState.DELIVERED, (result.state, result.error)
    assert not all(active for _, active in oauth.state.introspections)  # the cached one was refused first


@pytest.mark.parametrize("mech", ["xoauth2", "oauthbearer"])
async def test_imap_authenticate_without_sasl_ir(lab, oauth, tmp_path, mech):
    """A server without SASL-IR gets the initial response after its empty continuation."""
    need_real_mail()
    import aioimaplib

    from flowtui.core.probes.auth import AuthRefused, imap_authenticate
    from flowtui.core.probes.smtp import tls_context

    config = load_config(write_config(lab, oauth, tmp_path / "c.toml", imap_auth=mech))
    settings = config.routes[0].imap

    async def login(settings):
        imap = aioimaplib.IMAP4(settings.host, settings.port, timeout=10, ssl_context=tls_context(settings))
        await imap.wait_hello_from_server()
        imap.protocol.capabilities.discard("SASL-IR")
        try:
            await imap_authenticate(imap, settings)
            return imap.protocol.state
        finally:
            await imap.logout()

    assert await login(settings) == "AUTH"
    bad = load_config(write_config(lab, oauth, tmp_path / "b.toml", imap_auth=mech, imap_oauth="echo wrong")).routes[0].imap
    with pytest.raises(AuthRefused, match=r"AUTHENTICATIONFAILED.*server says status="):
        await login(bad)
