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
from flowtui.lab.common import MAIL_DOMAIN, SENDER_USER
from integration.test_engine_postfix import lab  # noqa: F401 - the module-scoped lab fixture
from mail import imap_login, running_engine, send

pytestmark = pytest.mark.realmail


def bounce_config(state, tmp_path: Path, to: str) -> Path:
    doc = tomllib.loads((Path(state.dir) / "lab.toml").read_text())
    doc["monitor"]["database"] = str(tmp_path / "b.db")
    route = doc["routes"][0]
    route["to"] = to
    route["timeout"] = "20s"
    route["bounces"] = dict(route["imap"], username=SENDER_USER, password=state.passwords[SENDER_USER],
                            poll_interval="1s")
    route["bounces"].pop("junk_folders", None)
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
    asyncio.run(send(lab, b"Subject: lunch\r\n\r\nsee you at noon\r\n", to=SENDER_USER))
    cfg = bounce_config(lab, tmp_path, f"nobody-here@{MAIL_DOMAIN}")

    async def go():
        config = load_config(cfg)
        async with running_engine(config) as (engine, events):
            route = config.routes[0]
            pending = await engine.send(route)
            pid = pending.result.probe_id
            # a forward of the probe's id that is not a failure report: found by the search, not a bounce
            await send(lab, f"Subject: fwd\r\n\r\nabout {pid} and {pending.result.message_id}\r\n".encode(), to=SENDER_USER)
            async with asyncio.timeout(30):
                await pending.done.wait()
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
    dsn = [m for uid, (f, m) in after.items() if uid not in before and b"nobody-here" in m and b"5.1.1" in m]
    assert dsn and all("\\Seen" not in after[uid][0] for uid in after if uid not in before)


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
