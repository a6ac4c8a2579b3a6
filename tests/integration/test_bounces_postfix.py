"""Bounces through the real Postfix + Dovecot lab: a probe to a user that does not
exist comes back as a DSN in the sender's mailbox, and the probe is `bounced`."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest
import tomli_w

from conftest import need_real_mail
from flowtui.core.config import load_config
from flowtui.core.model import ProbeState
from flowtui.lab import postfix
from flowtui.lab.common import MAIL_DOMAIN, SENDER_USER
from integration.test_engine_postfix import lab  # noqa: F401 - the module-scoped lab fixture
from mail import imap_login, running_engine, send

pytestmark = pytest.mark.realmail


def bounce_config(state, tmp_path: Path, to: str, bounce_port: int | None = None) -> Path:
    """The lab's route to ``to`` with the sender's mailbox as its bounce mailbox
    (through plain IMAP on ``bounce_port`` when given: a logging proxy)."""
    doc = tomllib.loads((Path(state.dir) / "lab.toml").read_text())
    doc["monitor"]["database"] = str(tmp_path / "b.db")
    route = doc["routes"][0]
    route["to"] = to
    route["timeout"] = "20s"
    route["bounces"] = dict(route["imap"], username=SENDER_USER, password=state.passwords[SENDER_USER],
                            poll_interval="1s")
    route["bounces"].pop("junk_folders", None)
    if bounce_port is not None:
        route["bounces"].update(port=bounce_port, security="none")
        route["bounces"].pop("ca_file", None)
    path = Path(state.dir) / f"bounces-{tmp_path.name}.toml"  # beside the lab: its ca_file is relative
    path.write_text(tomli_w.dumps(doc))
    path.chmod(0o600)
    return path


async def sender_mailbox(state) -> dict[int, tuple[str, bytes]]:
    """UID -> (flags, whole message) of the sender's INBOX, read without changing anything."""
    imap = await imap_login(state, user=SENDER_USER)
    try:
        await imap.examine("INBOX")
        imap.protocol.state = "SELECTED"
        r = await imap.uid("fetch", "1:*", "(FLAGS BODY.PEEK[])")
        out, uid = {}, None
        for i, line in enumerate(r.lines):
            if isinstance(line, bytes) and b"FETCH" in line and b"UID" in line:
                head = line.decode(errors="replace")
                uid = int(head.split("UID ", 1)[1].split()[0].strip(")"))
                flags = head.split("FLAGS (", 1)[1].split(")", 1)[0] if "FLAGS (" in head else ""
                out[uid] = (flags, bytes(r.lines[i + 1]) if i + 1 < len(r.lines) else b"")
        return out
    finally:
        await imap.logout()


def test_probe_to_an_unknown_user_is_bounced_with_the_reason(lab, tmp_path):  # noqa: F811
    need_real_mail()
    # the sender's mailbox also holds mail of its own: one plain message, and one that
    # quotes the text a search could match but is no bounce; neither may be touched
    from integration.test_watcher_safety import LoggingProxy

    asyncio.run(send(lab, b"Subject: lunch\r\n\r\nsee you at noon\r\n", to=SENDER_USER))
    proxy = LoggingProxy(lab.imap_port)  # every command sent to the sender's mailbox, off the wire

    async def go():
        port = await proxy.start()
        config = load_config(bounce_config(lab, tmp_path, f"nobody-here@{MAIL_DOMAIN}", bounce_port=port))
        async with running_engine(config) as (engine, events):
            route = config.routes[0]
            [bw] = engine.bounce_watchers.values()
            await asyncio.to_thread(postfix.hold, lab.dir, 2)  # the bounce waits until the decoy was seen
            try:
                pending = await engine.send(route)
                pid = pending.result.probe_id
                # a forward that quotes the probe's id and Message-ID but is no failure report: the
                # server's search finds it; it must be looked at by its header fields only
                imap = await imap_login(lab, user=SENDER_USER)
                fwd = f"From: a.user@example.test\r\nSubject: fwd\r\n\r\nabout {pid} and {pending.result.message_id}\r\n"
                await imap.append(fwd.encode(), mailbox="INBOX")
                await imap.logout()
                rounds = bw.rounds
                async with asyncio.timeout(20):
                    while bw.rounds < rounds + 2:
                        await asyncio.sleep(0.2)
                assert pending.result.state is ProbeState.PENDING  # the decoy decided nothing
            finally:
                await asyncio.to_thread(postfix.release, lab.dir, 2)
            async with asyncio.timeout(30):
                await pending.done.wait()
        await proxy.close()
        return pending.result, engine.bounce_watchers

    before = asyncio.run(sender_mailbox(lab))
    result, watchers = asyncio.run(go())
    assert result.state is ProbeState.BOUNCED, result
    assert result.bounce is not None and (result.bounce.status or "").startswith("5.1.1"), result.bounce
    assert "nobody-here" in (result.bounce.recipient or "")
    assert result.total_s is None  # it never arrived
    after = asyncio.run(sender_mailbox(lab))
    # nothing that was there changed flags or went away; the DSN itself is left in place, unread
    for uid, (flags, _) in before.items():
        assert after[uid][0] == flags, (uid, flags, after[uid])
    dsn = [uid for uid, (f, m) in after.items() if uid not in before and b"nobody-here" in m and b"5.1.1" in m]
    assert dsn and all("\\Seen" not in after[uid][0] for uid in after if uid not in before)
    # on the wire: read-only, and only the report's body was fetched; of the others (the
    # forward the search also found) at most their Return-Path, From and Content-Type
    import re

    commands = [ln.decode(errors="replace").strip().upper() for ln in proxy.client_lines]
    assert any(" EXAMINE " in c for c in commands) and not any(" SELECT " in c for c in commands)
    assert not any(re.search(r" UID (STORE|COPY|MOVE|EXPUNGE)\b| (STORE|EXPUNGE)\b", c) for c in commands)
    whole = {int(m.group(1)) for c in commands if (m := re.search(r" UID FETCH (\d+) \(BODY\.PEEK\[\]\)", c))}
    assert whole == set(dsn), (whole, dsn)
    fwd = [uid for uid, (_, m) in after.items() if b"Subject: fwd" in m]
    assert fwd and any(f" UID FETCH {fwd[0]} " in c and "HEADER.FIELDS" in c for c in commands)  # it was looked at


def test_a_delivered_probe_is_not_bounced_and_bounce_search_stops(lab, tmp_path):  # noqa: F811
    need_real_mail()
    from flowtui.lab.common import PROBE_USER

    cfg = bounce_config(lab, tmp_path, PROBE_USER)

    async def go():
        config = load_config(cfg)
        async with running_engine(config) as (engine, events):
            result = await engine.probe_once(config.routes[0], timeout=20)
            [bw] = engine.bounce_watchers.values()
            return result, engine._bounce_wanted((config.routes[0].name,)), bw.state

    result, wanted, state = asyncio.run(go())
    assert result.state is ProbeState.DELIVERED and wanted == []
