"""The real lab: Postfix hops and Dovecot on loopback, driven through the CLI."""

from __future__ import annotations

import asyncio
import stat
import time
import tomllib
from pathlib import Path

import aiosmtplib
import pytest

from conftest import need_real_mail
from flowtui.lab.common import LabState
from flowtui.lab.procs import processes_in
from integration.labproc import flowtui
from mail import absent_for, idle_sees_new_mail, imap_login, make_message, send, wait_found

pytestmark = pytest.mark.realmail


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    """A 2-hop and a 3-hop lab running at the same time, in two directories."""
    need_real_mail()
    import tempfile

    dirs = {}
    for hops in (2, 3):
        d = Path(tempfile.mkdtemp(prefix=f"flowtui-pf{hops}-", dir="/tmp"))
        d.chmod(0o755)
        dirs[hops] = d
    started = {}
    try:
        for hops, d in dirs.items():
            t0 = time.monotonic()
            r = flowtui("lab", "up", "--dir", str(d), "--hops", str(hops))
            assert r.returncode == 0, r.stderr
            started[hops] = time.monotonic() - t0
        yield {h: LabState.load(d) for h, d in dirs.items()}
    finally:
        for d in dirs.values():
            if (d / "lab.json").exists():
                flowtui("lab", "down", "--dir", str(d))
        import shutil

        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("hops", [2, 3])
def test_chain_delivers_with_a_received_header_per_hop(labs, hops):
    state = labs[hops]
    assert state.kind == "postfix" and state.hops == hops
    msgid, data = make_message(f"{hops}-hop")

    async def go():
        reply = await send(state, data)
        assert "queued as" in reply[1]
        return await wait_found(state, msgid)

    msg = asyncio.run(go())
    received = msg.get_all("Received")
    assert len(received) >= hops + 1, received
    top = str(received[0])
    assert "by mailbox.lab.test with LMTP" in top
    # each Postfix hop stamped its own header, the submission hop with TLS + AUTH
    for h in range(1, hops + 1):
        assert any(f"by hop{h}.lab.test" in str(r) for r in received)
    assert "ESMTPSA" in str(received[-1]) and "using TLS" in str(received[-1])
    # the path parser reads this real chain cleanly (issue: path inspector)
    from flowtui.core.headers import parse_received_chain

    path = parse_received_chain([str(r) for r in received])
    assert path.warnings == () and len(path.hops) == hops + 1
    assert all(h.delay_s is None or h.delay_s >= 0 for h in path.hops) and path.total_s >= 0
    assert path.hops[0].tls is True and path.hops[-1].with_protocol == "LMTP"
    assert [h.by_host for h in path.hops] == [f"hop{i}.lab.test" for i in range(1, hops + 1)] + ["mailbox.lab.test"]


def test_two_labs_use_distinct_free_ports(labs):
    a, b = labs[2], labs[3]
    ports_a = set(a.smtp_ports) | {a.imap_port, a.imaps_port, *map(int, (a.extra["lmtp_port"], a.extra["auth_port"]))}
    ports_b = set(b.smtp_ports) | {b.imap_port, b.imaps_port, *map(int, (b.extra["lmtp_port"], b.extra["auth_port"]))}
    assert not ports_a & ports_b
    assert len(ports_a) == 2 + 4 and len(ports_b) == 3 + 4


def test_lab_toml_is_a_private_flowtui_config_for_the_whole_chain(labs):
    state = labs[2]
    path = Path(state.dir) / "lab.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = tomllib.loads(path.read_text())
    route = cfg["routes"][0]
    assert route["smtp"]["port"] == state.smtp_ports[0]
    assert route["imap"]["port"] == state.imaps_port and route["imap"]["security"] == "tls"
    assert route["smtp"]["password"] == state.passwords[route["from"]]
    assert (path.parent / route["smtp"]["ca_file"]).exists()


def test_plain_imap_and_imaps_both_serve_the_mailbox(labs):
    state = labs[2]

    async def go():
        for tls in (False, True):
            imap = await imap_login(state, tls=tls)
            r = await imap.select("INBOX")
            assert r.result == "OK"
            await imap.logout()

    asyncio.run(go())


def test_submission_requires_authentication(labs):
    state = labs[2]
    _, data = make_message()

    async def go():
        from mail import tls_context

        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await aiosmtplib.send(
                data, sender="sender@example.test", recipients=["probe@example.test"],
                hostname="127.0.0.1", port=state.smtp_ports[0], start_tls=True,
                tls_context=tls_context(state), timeout=10,
            )

    asyncio.run(go())


def test_idle_notices_delivery(labs):
    state = labs[2]
    msgid, data = make_message("idle")
    elapsed = asyncio.run(idle_sees_new_mail(state, lambda: send(state, data)))
    assert elapsed < 10


def test_hold_delays_delivery_until_release(labs):
    state = labs[2]
    d = state.dir
    r = flowtui("lab", "hold", "--dir", d, "2")
    assert r.returncode == 0, r.stderr
    assert "held" in flowtui("lab", "status", "--dir", d).stdout
    msgid, data = make_message("held")
    asyncio.run(send(state, data))
    try:
        assert asyncio.run(absent_for(state, msgid, 4.0)), "held mail reached the mailbox"
    finally:
        r = flowtui("lab", "release", "--dir", d, "2")
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    asyncio.run(wait_found(state, msgid, timeout=20))
    assert time.monotonic() - t0 < 20


def test_stop_makes_a_hop_refuse_connections_and_start_brings_it_back(labs):
    state = labs[3]
    d = state.dir
    r = flowtui("lab", "stop", "--dir", d, "1")
    assert r.returncode == 0, r.stderr
    _, data = make_message("refused")
    with pytest.raises((aiosmtplib.SMTPConnectError, ConnectionRefusedError, OSError)):
        asyncio.run(send(state, data))
    assert "stopped" in flowtui("lab", "status", "--dir", d).stdout
    r = flowtui("lab", "start", "--dir", d, "1")
    assert r.returncode == 0, r.stderr
    msgid, data = make_message("after start")
    asyncio.run(send(state, data))
    asyncio.run(wait_found(state, msgid))


def test_a_stopped_inner_hop_queues_mail_until_it_starts(labs):
    state = labs[3]
    d = state.dir
    assert flowtui("lab", "stop", "--dir", d, "2").returncode == 0
    msgid, data = make_message("queued behind a stopped hop")
    try:
        asyncio.run(send(state, data))
        assert asyncio.run(absent_for(state, msgid, 2.0))
    finally:
        assert flowtui("lab", "start", "--dir", d, "2").returncode == 0
    asyncio.run(wait_found(state, msgid, timeout=20))


def test_bad_hop_number_is_one_line(labs):
    r = flowtui("lab", "hold", "--dir", labs[2].dir, "9")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "hops 1 to 2" in r.stderr
    assert "Traceback" not in r.stderr


def test_down_leaves_no_process(labs):
    for state in labs.values():
        before = processes_in(state.dir)
        assert len(before) >= 5, before  # masters, smtpd, dovecot, ...
        r = flowtui("lab", "down", "--dir", state.dir)
        assert r.returncode == 0, r.stderr
        assert processes_in(state.dir) == {}
        st = flowtui("lab", "status", "--dir", state.dir)
        assert st.returncode == 3 and "running" not in st.stdout
