"""`flowtui probe` argument errors (Nagios UNKNOWN) and the headless result lines."""

from __future__ import annotations

import pytest

from flowtui.cli import main
from flowtui.core.model import Hop, ImapSettings, ProbeResult, ProbeState, Route, Security, ServerSettings
from flowtui.headless import result_line
from flowtui.lab.common import LabState, write_lab_config
from flowtui.probecmd import CRITICAL, OK, WARNING, perfdata, verdict


@pytest.fixture
def lab_config(tmp_path):
    state = LabState(kind="embedded", dir=str(tmp_path), hops=2, smtp_ports=[1025, 1026], imap_port=1143,
                     imaps_port=1993, passwords={"probe@example.test": "p1", "sender@example.test": "p2"})
    return write_lab_config(state, tls=False)


@pytest.mark.parametrize("value, words", [("abc", "expected a duration"), ("0s", "more than zero"), ("-5s", "")])
def test_bad_timeout_is_unknown_in_one_line(lab_config, capsys, value, words):
    code = main(["probe", "-c", str(lab_config), f"--timeout={value}"])
    out = capsys.readouterr()
    assert code == 3 and out.err == ""
    assert out.out.startswith("FLOWTUI UNKNOWN - --timeout: ") and words in out.out
    assert out.out.count("\n") == 1


def test_unknown_route_and_bad_config_are_unknown(lab_config, tmp_path, capsys):
    assert main(["probe", "-c", str(lab_config), "nope"]) == 3
    assert "no route named 'nope'" in capsys.readouterr().out
    assert main(["probe", "-c", str(tmp_path / "missing.toml")]) == 3
    assert "missing.toml" in capsys.readouterr().out


ROUTE = Route(
    name="hq", mail_from="a@example.test", rcpt_to="b@example.test",
    smtp=ServerSettings("127.0.0.1", 25, Security.NONE), imap=ImapSettings("127.0.0.1", 143, Security.NONE),
    warn_s=5, crit_s=30, timeout_s=60,
)


def result(**kw) -> ProbeResult:
    base = dict(route="hq", probe_id="p", seq=7, state=ProbeState.DELIVERED, sent_at=1_800_000_000.0,
                submit_s=0.1, transit_s=0.4, total_s=0.5, hops=(Hop(0), Hop(1), Hop(2)), folder="INBOX")
    base.update(kw)
    return ProbeResult(**base)


@pytest.mark.parametrize("total, code, flag", [(0.5, OK, ""), (6.0, WARNING, " WARN"), (31.0, CRITICAL, " CRIT")])
def test_latency_thresholds(total, code, flag):
    r = result(total_s=total)
    assert verdict(ROUTE, r)[0] == code
    line = result_line(r, ROUTE, now=1_800_000_001.0)
    assert line.startswith(f"2027-01-15T08:00:01Z hq #7 delivered{flag} total=")
    assert "hops=3" in line


def test_failures_and_lost():
    assert verdict(ROUTE, result(state=ProbeState.LOST, total_s=None), timeout=3.0) == (
        CRITICAL, "hq: not delivered within 3s")
    r = result(state=ProbeState.SEND_FAILED, error="535 5.7.8 auth failed", error_phase="auth")
    assert verdict(ROUTE, r)[0] == CRITICAL
    assert result_line(r, ROUTE).endswith("send_failed at auth: 535 5.7.8 auth failed")
    assert "not seen within 60s (sent 2027-01-15T08:00:00Z)" in result_line(result(state=ProbeState.LOST), ROUTE)
    assert verdict(ROUTE, result(state=ProbeState.JUNK, folder="Junk"))[0] == WARNING
    assert " in Junk" in result_line(result(state=ProbeState.JUNK, folder="Junk"), ROUTE)


def test_perfdata_and_escaping():
    assert perfdata(ROUTE, result()) == "'hq_submit'=0.100s 'hq_transit'=0.400s 'hq_total'=0.500s;5;30 'hq_hops'=3"
    assert "'hq_total'=U;5;30" in perfdata(ROUTE, result(total_s=None))
    hostile = result(route="r\x1b[31m[bold]x", error="\x07boom\x1b]0;title\x07", state=ProbeState.SEND_FAILED)
    line = result_line(hostile, None)
    assert "\x1b" not in line and "\x07" not in line  # shown as text, never sent raw
    assert "[bold]" in line and "\\[bold]" not in line  # plain text: no Rich here, so no markup escapes


def test_timeout_bounds_the_whole_check_even_when_servers_hang(tmp_path):
    """--timeout 2s against servers that accept and never answer: done in seconds, not 30 s each."""
    import socket
    import subprocess
    import sys
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[monitor]\ndatabase = "{tmp_path / "d.db"}"\n[[routes]]\nname = "r"\nfrom = "a@example.com"\n'
        f'to = "b@example.com"\n[routes.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f'[routes.imap]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
    )
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "flowtui", "probe", "-c", str(cfg), "--timeout", "2s"],
                           capture_output=True, text=True, timeout=60)
    finally:
        silent.close()
    took = time.monotonic() - t0
    assert p.returncode in (2, 3) and p.stdout.startswith("FLOWTUI "), p.stdout + p.stderr
    assert took < 15, took  # each step used to wait its own 30 s
    assert "Traceback" not in p.stderr
