"""The engine against the embedded lab: junk, corrupted, lost/late, one watcher per mailbox."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from flowtui.core.config import load_config
from flowtui.core.events import ProbeCompleted
from flowtui.core.model import ProbeState
from flowtui.core.storage import Store
from flowtui.lab.embedded import EmbeddedLab
from mail import imap_login, running_engine


async def with_engine(lab_dir, routes_from, body):
    config = load_config(lab_dir / "lab.toml")
    config = replace(config, routes=tuple(routes_from(config.routes[0])),
                     monitor=replace(config.monitor, database=str(lab_dir / "e.db")))
    async with running_engine(config, 10) as (engine, events):
        return await body(engine, config, events)


async def test_probe_in_junk_folder_is_junk_and_shared_mailbox_has_one_watcher(lab_dir):
    async with await EmbeddedLab.start(lab_dir):
        def routes(r):
            return [r, replace(r, name="to-junk", rcpt_to="probe+Junk@example.test")]

        async def body(engine, config, events):
            assert len(engine.watchers) == 1  # same mailbox: one connection
            inbox, junk = config.routes
            return await asyncio.gather(engine.probe_once(inbox, 10), engine.probe_once(junk, 10))

        ok, junk = await with_engine(lab_dir, routes, body)
    assert ok.state is ProbeState.DELIVERED and ok.folder == "INBOX"
    assert junk.state is ProbeState.JUNK and junk.folder == "Junk" and junk.total_s > 0
    # on loopback a probe can land before the 250 reaches flowtui: its submit figures stay
    for r in (ok, junk):
        assert r.submit_s is not None and r.queue_id
        assert abs(r.submit_s + r.transit_s - r.total_s) < 1e-6


async def test_content_changed_in_transit_is_corrupted(lab_dir):
    async with await EmbeddedLab.start(lab_dir) as lab:
        lab.hop(2).rewrite = lambda data: data.replace(b"automated", b"AUTOMATED")

        async def body(engine, config, events):
            return await engine.probe_once(replace(config.routes[0], timeout_s=2.0))

        r = await with_engine(lab_dir, lambda r: [r], body)
        # recorded as corrupted with the changed copy's times, and the copy is left in place
        assert r.state is ProbeState.CORRUPTED and r.content_ok is False and 0 < r.total_s < 2
        imap = await imap_login(lab.state, tls=False)
        await imap.select("INBOX")
        left = await imap.uid_search("HEADER", "X-Flowtui-Probe", r.probe_id, charset=None)
        await imap.logout()
        assert left.lines[0].split(), "a changed copy must never be deleted"


async def test_lost_then_late_and_sequence_numbers(lab_dir):
    async with await EmbeddedLab.start(lab_dir) as lab:
        async def body(engine, config, events):
            route = replace(config.routes[0], timeout_s=1.0)
            first = await engine.probe_once(route, 5)
            lab.hop(1).hold()
            lost = await engine.probe_once(route)
            assert lost.state is ProbeState.LOST
            lab.hop(1).release()
            async with asyncio.timeout(10):
                async for ev in events:
                    if isinstance(ev, ProbeCompleted) and ev.result.probe_id == lost.probe_id \
                            and ev.result.state is ProbeState.LATE:
                        return first, lost, ev.result

        first, lost, late = await with_engine(lab_dir, lambda r: [r], body)
    assert (first.seq, lost.seq) == (1, 2) and late.seq == 2
    assert first.state is ProbeState.DELIVERED
    assert late.total_s > 1.0 and len(late.hops) == 3
    with Store(lab_dir / "e.db") as store:
        assert store.probe(late.probe_id).state is ProbeState.LATE
        assert store.next_seq(first.route) == 3


async def test_replayed_real_tokens_never_delete_mail_or_decide_a_result(lab_dir):
    """Someone who saw a probe's headers copies its token into other mail: nothing is touched."""
    import re

    from flowtui.core.model import ProbeState as S

    async with await EmbeddedLab.start(lab_dir) as lab:
        async def body(engine, config, events):
            route = config.routes[0]
            lab.hop(1).hold()
            pending = await engine.send(route)  # in flight, held at hop 1
            token = re.search(r"<flowtui\.(.+)@", pending.result.message_id).group(1)
            msgid = pending.result.message_id
            decoys = [
                # same token and Message-ID, other content
                f"Message-ID: {msgid}\r\nX-Flowtui-Probe: {token}\r\nSubject: user mail 1\r\n\r\nmine\r\n",
                # same token, another Message-ID
                f"Message-ID: <user2@example.test>\r\nX-Flowtui-Probe: {token}\r\nSubject: user mail 2\r\n\r\nmine\r\n",
                # the token twice
                f"Message-ID: {msgid}\r\nX-Flowtui-Probe: {token}\r\nX-Flowtui-Probe: {token}\r\n\r\nmine\r\n",
                # lower-case field name and trailing space
                f"Message-ID: <user4@example.test>\r\nx-flowtui-probe: {token} \r\n\r\nmine\r\n",
            ]
            imap = await imap_login(lab.state, tls=False)
            for i, d in enumerate(decoys):
                assert (await imap.append(d.encode(), mailbox="INBOX", flags=r"(\Flagged)" if i % 2 else None)).result == "OK"
            await asyncio.sleep(2.5)  # the watcher has seen them all by now
            assert pending.result.state is S.PENDING  # no look-alike decided the result
            lab.hop(1).release()
            async with asyncio.timeout(10):
                await pending.done.wait()
            result = pending.result
            # after delivery, a replay of the delivered probe's token into new mail
            replay = f"Message-ID: <user5@example.test>\r\nX-Flowtui-Probe: {token}\r\n\r\nreplayed\r\n"
            assert (await imap.append(replay.encode(), mailbox="INBOX")).result == "OK"
            await asyncio.sleep(2.5)
            await imap.select("INBOX")
            left = await imap.uid_search("ALL", charset=None)
            flagged = await imap.uid_search("FLAGGED", charset=None)
            await imap.logout()
            return result, left.lines[0].split(), flagged.lines[0].split()

        result, left, flagged = await with_engine(lab_dir, lambda r: [r], body)
    assert result.state is ProbeState.DELIVERED and result.content_ok
    assert len(left) == 5  # four decoys and the replay, all still there (the probe itself is gone)
    assert len(flagged) == 2


def test_probe_reports_a_missing_folder_and_bad_database_in_one_line(lab_dir):
    import tomllib

    import tomli_w

    from integration.labproc import flowtui

    d = lab_dir / "lab"
    assert flowtui("lab", "up", "--embedded", "--dir", str(d)).returncode == 0
    try:
        doc = tomllib.loads((d / "lab.toml").read_text())
        doc["routes"][0]["imap"]["folders"] = ["Nope"]
        def write(name):
            (d / name).write_text(tomli_w.dumps(doc))
            (d / name).chmod(0o600)  # it holds the lab's literal passwords

        write("nofolder.toml")
        r = flowtui("probe", "-c", str(d / "nofolder.toml"), "--timeout", "5s")
        assert r.returncode == 2 and len(r.stdout.splitlines()) == 1
        assert "cannot select folder 'Nope'" in r.stdout and "Traceback" not in r.stderr
        doc["routes"][0]["imap"]["folders"] = ["INBOX"]
        for db in ("/tmp", "/etc/passwd"):
            doc["monitor"]["database"] = db
            write("baddb.toml")
            r = flowtui("probe", "-c", str(d / "baddb.toml"))
            assert r.returncode == 3 and "monitor.database" in r.stdout and db in r.stdout, r.stdout + r.stderr
            r = flowtui("run", "--headless", "-c", str(d / "baddb.toml"))
            assert r.returncode == 2 and "monitor.database" in r.stderr and "Traceback" not in r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
        doc["monitor"]["database"] = "flowtui.db"
        doc["routes"][0]["smtp"]["ca_file"] = "/etc/hostname"
        write("badca.toml")
        r = flowtui("check", "-c", str(d / "badca.toml"))
        assert r.returncode == 2 and "smtp.ca_file" in r.stderr and "not a PEM" in r.stderr
    finally:
        flowtui("lab", "down", "--dir", str(d))
