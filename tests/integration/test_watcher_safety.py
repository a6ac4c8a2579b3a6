"""What the watcher says to the IMAP server, read off the wire.

A logging proxy sits between flowtui and the embedded lab's IMAP server. The
mailbox holds ordinary mail, a message with a forged token (another
installation's key) and one with a broken HMAC. After several probes the log
must show that flowtui never fetched, flagged, moved or expunged any of them,
and that the only thing it ever read of the two look-alikes is the token field.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

from flowtui.core.config import load_config
from flowtui.core.engine import Engine
from flowtui.core.events import EventBus
from flowtui.core.model import ProbeState, Security
from flowtui.core.storage import Store
from flowtui.core.token import build_message
from flowtui.lab.embedded import EmbeddedLab
from mail import imap_login


class LoggingProxy:
    """A TCP proxy on 127.0.0.1 that records every line the client sends."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.client_lines: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _conn(self, reader, writer) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(src, dst, log):
            try:
                while data := await src.readline():
                    if log:
                        self.client_lines.append(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_w, True), pump(up_r, writer, False))

    async def close(self) -> None:
        self.server.close()


async def snapshot(state) -> dict[int, tuple[str, bytes]]:
    imap = await imap_login(state, tls=False)
    await imap.select("INBOX")
    r = await imap.uid("fetch", "1:*", "(UID FLAGS BODY.PEEK[])")
    out = {}
    for i, line in enumerate(r.lines):
        if isinstance(line, bytearray):
            head = bytes(r.lines[i - 1]) + (bytes(r.lines[i + 1]) if isinstance(r.lines[i + 1], bytes) else b"")
            uid = int(re.search(rb"UID (\d+)", head).group(1))
            flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split()
            out[uid] = (" ".join(sorted(f for f in flags if f != "\\Recent")), bytes(line))
    await imap.logout()
    return out


async def test_watcher_never_touches_what_is_not_a_verified_probe(lab_dir):
    async with await EmbeddedLab.start(lab_dir) as lab:
        config = load_config(lab_dir / "lab.toml")
        key_other = b"9" * 64
        forged = build_message(key_other, config.routes[0].name, 3, "x@example.test", "probe@example.test", "s", "b").data
        mine_then_broken = build_message(b"k" * 64, config.routes[0].name, 4, "x@example.test", "probe@example.test", "s", "b").data
        mine_then_broken = re.sub(rb"(X-Flowtui-Probe: \S+)\w{4}\r\n", rb"\1beef\r\n", mine_then_broken)
        imap = await imap_login(lab.state, tls=False)
        for i in range(8):
            msg = f"From: a{i}@example.test\r\nSubject: real mail {i}\r\nMessage-ID: <m{i}@example.test>\r\n\r\nbody {i}\r\n"
            flags = [None, r"(\Seen)", r"(\Flagged)", r"(\Deleted)"][i % 4]
            assert (await imap.append(msg.encode(), mailbox="INBOX", flags=flags)).result == "OK"
        assert (await imap.append(forged, mailbox="INBOX", flags=r"(\Deleted)")).result == "OK"
        assert (await imap.append(mine_then_broken, mailbox="INBOX")).result == "OK"
        await imap.logout()
        before = await snapshot(lab.state)
        ordinary = set(before)
        assert len(ordinary) == 10

        proxy = LoggingProxy(lab.state.imap_port)
        port = await proxy.start()
        route = config.routes[0]
        imap_settings = replace(route.imap, port=port, security=Security.NONE)
        config = replace(config, routes=(replace(route, imap=imap_settings),),
                         monitor=replace(config.monitor, database=str(lab_dir / "safety.db")))
        store = Store(config.monitor.database)
        engine = Engine(config, store, EventBus())
        try:
            await engine.start(schedule=False)
            await engine.wait_ready(10)
            results = [await engine.probe_once(config.routes[0], timeout=10) for _ in range(5)]
        finally:
            await engine.stop()
            store.close()
            await proxy.close()
        assert [r.state for r in results] == [ProbeState.DELIVERED] * 5
        assert await snapshot(lab.state) == before  # same UIDs, flags and bytes

        commands = [ln.decode(errors="replace").strip() for ln in proxy.client_lines]
        joined = "\n".join(commands)
        assert "UID SEARCH" in joined and "IDLE" in joined
        touched_ordinary = []
        for cmd in commands:
            upper = cmd.upper()
            m = re.match(r"^\S+ UID (FETCH|STORE|EXPUNGE|MOVE|COPY) (\S+)", upper)
            plain = re.match(r"^\S+ (FETCH|STORE|EXPUNGE|MOVE|COPY|SEARCH)\b", upper)
            assert not plain, f"a sequence-number command (not by UID): {cmd}"
            if not m:
                continue
            verb, uids = m.group(1), m.group(2)
            uid_set = {int(u) for u in re.findall(r"\d+", uids)}
            assert ":" not in uids and "*" not in uids, f"a range, not one UID: {cmd}"
            if uid_set & ordinary:
                touched_ordinary.append(cmd)
                # the only thing ever asked of a non-probe is its token field, without \Seen
                assert verb == "FETCH" and "BODY.PEEK[HEADER.FIELDS (X-FLOWTUI-PROBE)]" in upper, cmd
        # only the two look-alikes were even asked for their token field; plain mail never
        assert len(touched_ordinary) == 2
        assert all(re.search(r"UID FETCH (\d+)", c).group(1) in {str(u) for u in sorted(ordinary)[-2:]} for c in touched_ordinary)
        assert not any(re.search(r"\bEXPUNGE\s*$", c.upper()) and "UID" not in c.upper() for c in commands)
        assert not any("BODY[" in c.upper() and "PEEK" not in c.upper() for c in commands)
