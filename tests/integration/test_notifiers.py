"""Command and webhook notifiers against a real script and a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time

import pytest

from flowtui.core import notify
from flowtui.core.model import NotifierSettings
from flowtui.core.storage import AlertRecord

ALERT = AlertRecord(id="lost|lab|1700000000000", route="lab", rule="lost", severity="crit", state="fired",
                    fired_at=1_700_000_000.0, message="#7 not seen")


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        srv = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        srv.hits.append((self.path, self.headers["Content-Type"], json.loads(body)))
        if srv.hang_s:
            time.sleep(srv.hang_s)
        code = srv.codes.pop(0) if srv.codes else 200
        try:
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except BrokenPipeError:
            pass  # the client timed out and left (the hanging case)

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    srv.hits, srv.codes, srv.hang_s = [], [], 0.0
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv, path="/hook") -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


@pytest.mark.parametrize("fmt", ["json", "slack", "teams"])
def test_webhook_posts_each_shape(hook, fmt):
    n = notify.WebhookNotifier(NotifierSettings(kind="webhook", url=_url(hook), format=fmt, timeout_s=5))
    assert asyncio.run(n.send("fired", ALERT)) is None
    [(path, ctype, body)] = hook.hits
    assert path == "/hook" and ctype == "application/json"
    if fmt == "json":
        assert body["flowtui_alert"]["id"] == ALERT.id and body["flowtui_alert"]["severity"] == "crit"
        assert body["flowtui_alert"]["fired_at"] == "2023-11-14T22:13:20Z"
    elif fmt == "slack":
        assert body["text"].startswith("flowtui CRIT fired: lost on lab") and "#7 not seen" in body["text"]
    else:
        assert body["@type"] == "MessageCard" and body["text"] == "#7 not seen" and body["themeColor"] == "D00000"


def test_webhook_retries_after_a_server_error(hook, monkeypatch):
    monkeypatch.setattr(notify, "RETRY_BASE_S", 0.05)
    hook.codes = [500, 503]
    n = notify.WebhookNotifier(NotifierSettings(kind="webhook", url=_url(hook), timeout_s=5, retries=2))
    assert asyncio.run(n.send("resolved", ALERT)) is None
    assert len(hook.hits) == 3
    hook.hits.clear()
    hook.codes = [500, 500, 500]
    problem = asyncio.run(n.send("fired", ALERT))
    assert len(hook.hits) == 3 and "failed after 3 attempts: HTTP 500" in problem


def test_hanging_webhook_times_out(hook):
    hook.hang_s = 3.0
    n = notify.WebhookNotifier(NotifierSettings(kind="webhook", url=_url(hook), timeout_s=0.5, retries=0))
    t0 = time.monotonic()
    problem = asyncio.run(n.send("fired", ALERT))
    assert time.monotonic() - t0 < 2.5
    assert problem and "timed out" in problem


def test_webhook_refused_is_a_reason_not_an_exception():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    n = notify.WebhookNotifier(NotifierSettings(kind="webhook", url=f"http://127.0.0.1:{port}/", timeout_s=2, retries=0))
    assert "refused" in asyncio.run(n.send("fired", ALERT)).lower()


def test_command_gets_the_alert_in_its_environment(tmp_path):
    out = tmp_path / "env.txt"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\nenv | grep ^FLOWTUI_ALERT_ | sort > "{out}"\n')
    script.chmod(0o755)
    n = notify.CommandNotifier(NotifierSettings(kind="command", command=str(script), timeout_s=5))
    assert asyncio.run(n.send("fired", ALERT)) is None
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env["FLOWTUI_ALERT_ID"] == ALERT.id and env["FLOWTUI_ALERT_EVENT"] == "fired"
    assert env["FLOWTUI_ALERT_ROUTE"] == "lab" and env["FLOWTUI_ALERT_MESSAGE"] == "#7 not seen"
    assert env["FLOWTUI_ALERT_SEVERITY"] == "crit" and env["FLOWTUI_ALERT_STATE"] == "fired"


def test_failing_and_hanging_commands_are_reported_and_killed(tmp_path):
    n = notify.CommandNotifier(NotifierSettings(kind="command", command="echo nope >&2; exit 4", timeout_s=5))
    assert asyncio.run(n.send("fired", ALERT)) == "the command failed with exit code 4: nope"
    pidfile = tmp_path / "pid"
    hang = notify.CommandNotifier(NotifierSettings(kind="command", command=f"sleep 30 & echo $! > {pidfile}; wait", timeout_s=0.5))
    t0 = time.monotonic()
    problem = asyncio.run(hang.send("fired", ALERT))
    assert time.monotonic() - t0 < 3 and "did not finish within 0.5s" in problem
    import os

    pid = int(pidfile.read_text())
    time.sleep(0.2)
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            assert f.read().split(")")[1].split()[0] == "Z", "the command's child survived"
    except ProcessLookupError:
        pass  # gone: the whole group was killed
