"""The embedded lab (aiosmtpd hops + pymap mailbox): the same checks as the real lab."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiosmtplib
import pytest

from flowtui.lab.common import LabState
from flowtui.lab.embedded import EmbeddedLab
from flowtui.lab.procs import processes_in
from integration.labproc import flowtui
from mail import absent_for, idle_sees_new_mail, imap_login, make_message, send, wait_found


@pytest.mark.parametrize("hops", [2, 3])
async def test_send_and_find_with_a_received_header_per_hop(lab_dir, hops):
    async with await EmbeddedLab.start(lab_dir, hops=hops) as lab:
        msgid, data = make_message()
        reply = await send(lab.state, data)
        assert "queued as" in reply[1]
        msg = await wait_found(lab.state, msgid)
        received = [str(r) for r in msg.get_all("Received")]
        assert len(received) >= hops + 1
        assert "by mailbox.demo.test with LMTP" in received[0]
        for h in range(1, hops + 1):
            assert any(f"by hop{h}.demo.test" in r for r in received)
        assert "with ESMTPSA" in received[-1] and "using TLS" in received[-1]
        # plain IMAP serves the same mailbox
        imap = await imap_login(lab.state, tls=False)
        assert (await imap.select("INBOX")).result == "OK"
        await imap.logout()


async def test_idle_notices_new_message_and_delivery_is_timed(lab_dir):
    async with await EmbeddedLab.start(lab_dir) as lab:
        msgid, data = make_message("idle")
        sent_mono = []

        async def send_one():
            sent_mono.append(time.monotonic())
            await send(lab.state, data)

        elapsed = await idle_sees_new_mail(lab.state, send_one)
        assert elapsed < 5
        landed = await lab.wait_for_delivery(msgid, timeout=5)
        assert sent_mono[0] < landed.mono < sent_mono[0] + elapsed
        # the truth is also on disk for benchmarks run in another process
        lines = (lab_dir / "deliveries.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["message_id"] == msgid


async def test_submission_requires_auth(lab_dir):
    async with await EmbeddedLab.start(lab_dir) as lab:
        _, data = make_message()
        from mail import tls_context

        with pytest.raises(aiosmtplib.SMTPException) as exc:
            await aiosmtplib.send(
                data, sender="sender@example.test", recipients=["probe@example.test"],
                hostname="127.0.0.1", port=lab.state.smtp_ports[0], start_tls=True,
                tls_context=tls_context(lab.state), timeout=10,
            )
        assert "530" in str(exc.value) or "Authentication" in str(exc.value)


async def test_hold_delays_until_release(lab_dir):
    async with await EmbeddedLab.start(lab_dir, hops=3) as lab:
        lab.hop(2).hold()
        msgid, data = make_message("held")
        await send(lab.state, data)
        assert await absent_for(lab.state, msgid, 1.5)
        assert len(lab.hop(2).queue) == 1
        t_release = time.monotonic()
        lab.hop(2).release()
        landed = await lab.wait_for_delivery(msgid, timeout=10)
        assert landed.mono - t_release < 3
        await wait_found(lab.state, msgid)


async def test_stopped_hop_refuses_and_queues_upstream(lab_dir):
    async with await EmbeddedLab.start(lab_dir, hops=2) as lab:
        await lab.hop(1).stop()
        _, data = make_message()
        with pytest.raises((aiosmtplib.SMTPConnectError, OSError)):
            await send(lab.state, data)
        await lab.hop(1).start()
        # an inner hop that is down: mail waits at hop 1 and flows when it returns
        await lab.hop(2).stop()
        msgid, data = make_message("behind a stopped hop")
        await send(lab.state, data)
        assert await absent_for(lab.state, msgid, 1.5)
        await lab.hop(2).start()
        await lab.wait_for_delivery(msgid, timeout=10)


def test_cli_up_status_hold_release_down(lab_dir):
    d = str(lab_dir / "lab")
    r = flowtui("lab", "up", "--embedded", "--dir", d, "--hops", "3")
    assert r.returncode == 0, r.stderr
    try:
        state = LabState.load(d)
        assert state.kind == "embedded" and len(state.smtp_ports) == 3
        assert (Path(d) / "lab.toml").stat().st_mode & 0o077 == 0
        st = flowtui("lab", "status", "--dir", d)
        assert st.returncode == 0 and st.stdout.count("running") == 4
        assert flowtui("lab", "hold", "--dir", d, "1").returncode == 0
        msgid, data = make_message("cli hold")
        asyncio.run(send(state, data))
        assert asyncio.run(absent_for(state, msgid, 1.5))
        assert "held, queue 1" in flowtui("lab", "status", "--dir", d).stdout
        assert flowtui("lab", "release", "--dir", d, "1").returncode == 0
        asyncio.run(wait_found(state, msgid, timeout=10))
        assert flowtui("lab", "stop", "--dir", d, "3").returncode == 0
        assert "hop3     stopped" in flowtui("lab", "status", "--dir", d).stdout
        assert flowtui("lab", "start", "--dir", d, "3").returncode == 0
        assert processes_in(d)  # the lab process runs in its directory
    finally:
        r = flowtui("lab", "down", "--dir", d)
    assert r.returncode == 0, r.stderr
    assert processes_in(d) == {}
    assert flowtui("lab", "status", "--dir", d).returncode == 3


def test_cli_up_twice_in_one_dir_is_refused(lab_dir):
    d = str(lab_dir / "lab")
    assert flowtui("lab", "up", "--embedded", "--dir", d).returncode == 0
    try:
        r = flowtui("lab", "up", "--embedded", "--dir", d)
        assert r.returncode == 2 and "already runs" in r.stderr
    finally:
        flowtui("lab", "down", "--dir", d)


def test_lab_up_refuses_a_non_empty_directory_and_a_concurrent_up(lab_dir):
    (lab_dir / "notes.txt").write_text("mine")
    r = flowtui("lab", "up", "--embedded", "--dir", str(lab_dir))
    assert r.returncode == 2 and "not empty" in r.stderr
    assert sorted(p.name for p in lab_dir.iterdir()) == ["notes.txt"]  # nothing written
    import fcntl
    import os

    d = lab_dir / "lab"
    d.mkdir()
    fd = os.open(d / ".lab.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another 'lab up' would hold it
    try:
        r = flowtui("lab", "up", "--embedded", "--dir", str(d))
        assert r.returncode == 2 and "another 'flowtui lab up'" in r.stderr
    finally:
        os.close(fd)


def test_down_never_signals_a_process_that_is_not_the_labs(lab_dir):
    import subprocess
    import sys

    d = str(lab_dir / "lab")
    assert flowtui("lab", "up", "--embedded", "--dir", d).returncode == 0
    assert flowtui("lab", "down", "--dir", d).returncode == 0
    # a stale lab.json whose PID now belongs to someone else's process
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd="/tmp")
    try:
        state = LabState.load(d)
        state.pids = {"server": other.pid}
        state.save()
        r = flowtui("lab", "down", "--dir", d)
        assert r.returncode == 0 and "nothing was running" in r.stdout
        assert other.poll() is None  # still alive
    finally:
        other.kill()
        other.wait()


def test_down_with_a_corrupted_state_file_still_stops_the_lab(lab_dir):
    from flowtui.lab.procs import stop_everything_in

    d = lab_dir / "lab"
    assert flowtui("lab", "up", "--embedded", "--dir", str(d)).returncode == 0
    try:
        assert processes_in(d)
        (d / "lab.json").write_text("{ not json")
        r = flowtui("lab", "down", "--dir", str(d))
        assert r.returncode == 0 and "not a lab state file" in r.stdout
        assert processes_in(d) == {}
    finally:
        stop_everything_in(d)  # whatever happened above, leave nothing running
