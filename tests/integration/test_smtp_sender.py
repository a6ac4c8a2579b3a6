"""The sender against real SMTP servers on loopback: phases, queue ids, failures as data."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import pytest
from aiosmtpd.smtp import SMTP as SMTPProtocol

from flowtui.core.model import Secret, Security, ServerSettings
from flowtui.core.probes.smtp import queue_id_of, send_probe
from flowtui.lab.embedded import EmbeddedLab
from mail import make_message


class Scripted:
    """An aiosmtpd handler that answers RCPT or DATA as told."""

    def __init__(self, rcpt: str | None = None, data: str = "250 2.0.0 Ok: queued as ABC123DEF") -> None:
        self.rcpt, self.data = rcpt, data

    async def handle_RCPT(self, server, session, envelope, address, options):
        if self.rcpt:
            return self.rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        return self.data


async def serve(handler) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTPProtocol(handler, hostname="scripted.test"), "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


def plain(port: int, **kw) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=port, security=Security.NONE, timeout_s=5, **kw)


async def test_phases_and_queue_id_on_success():
    srv, port = await serve(Scripted())
    try:
        out = await send_probe(plain(port), "a@example.test", "b@example.test", make_message()[1])
    finally:
        srv.close()
    assert out.ok and out.queue_id == "ABC123DEF" and out.error is None
    names = [n for n, _ in out.phases]
    assert names == ["connect", "ehlo", "data_accepted"]
    times = [t for _, t in out.phases]
    assert times == sorted(times) and out.submit_s == pytest.approx(times[-1], abs=1e-3)


@pytest.mark.parametrize(
    "handler, phase, words",
    [
        (Scripted(rcpt="550 5.1.1 <b@example.test>: Recipient address rejected"), "data", "550 5.1.1"),
        (Scripted(data="451 4.3.0 Try again later, greylisted"), "data", "451 4.3.0 Try again later, greylisted"),
        (Scripted(data="554 5.7.1 Message refused: spam"), "data", "554 5.7.1 Message refused: spam"),
    ],
)
async def test_refusals_are_results_with_the_servers_words(handler, phase, words):
    srv, port = await serve(handler)
    try:
        out = await send_probe(plain(port), "a@example.test", "b@example.test", make_message()[1])
    finally:
        srv.close()
    assert not out.ok and out.error_phase == phase and words in out.error
    assert out.accepted_mono is None and out.submit_s is None


async def test_refused_connection():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    out = await send_probe(plain(port), "a@example.test", "b@example.test", b"x")
    assert not out.ok and out.error_phase == "connect" and "refused" in out.error.lower()


async def test_silent_server_times_out_in_connect():
    async def mute(reader, writer):
        await asyncio.sleep(30)

    srv = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        out = await send_probe(
            ServerSettings(host="127.0.0.1", port=port, security=Security.NONE, timeout_s=0.5), "a@x.test", "b@x.test", b"x"
        )
    finally:
        srv.close()
    assert not out.ok and out.error_phase == "connect" and "timed out" in out.error


async def test_starttls_required_but_not_offered():
    srv, port = await serve(Scripted())
    try:
        settings = ServerSettings(host="127.0.0.1", port=port, security=Security.STARTTLS, timeout_s=5)
        out = await send_probe(settings, "a@example.test", "b@example.test", b"x")
    finally:
        srv.close()
    assert not out.ok and out.error_phase == "tls" and "STARTTLS" in out.error


async def test_lab_tls_auth_and_certificate_checks(lab_dir, tmp_path):
    async with await EmbeddedLab.start(lab_dir) as lab:
        port = lab.state.smtp_ports[0]
        ca = str(lab_dir / "tls" / "cert.pem")
        good = ServerSettings(
            host="127.0.0.1", port=port, security=Security.STARTTLS, username="sender@example.test",
            password=Secret(lab.state.passwords["sender@example.test"], "literal"), ca_file=ca, timeout_s=5,
        )
        out = await send_probe(good, "sender@example.test", "probe@example.test", make_message()[1])
        assert out.ok, out.error
        assert [n for n, _ in out.phases] == ["connect", "ehlo", "tls", "auth", "data_accepted"]
        # a wrong password: the server's words, in the auth phase, never the password
        bad = replace(good, password=Secret("not-the-password", "literal"))
        out = await send_probe(bad, "sender@example.test", "probe@example.test", b"x")
        assert not out.ok and out.error_phase == "auth" and "535" in out.error and "not-the-password" not in out.error
        # the system CAs do not know the lab's self-signed certificate: verified by default
        untrusted = replace(good, ca_file=None)
        out = await send_probe(untrusted, "sender@example.test", "probe@example.test", b"x")
        assert not out.ok and out.error_phase == "tls" and "certificate" in out.error.lower()
        # ... unless the route explicitly turns verification off
        unverified = replace(good, ca_file=None, verify_tls=False)
        out = await send_probe(unverified, "sender@example.test", "probe@example.test", make_message()[1])
        assert out.ok, out.error


@pytest.mark.parametrize(
    "reply, qid",
    [
        ("2.0.0 Ok: queued as 4E1B520C4DE", "4E1B520C4DE"),
        ("OK id=1tXyZa-000AbC-2b", "1tXyZa-000AbC-2b"),
        ("2.0.0 OK  1701234567 d9443c01a7336-1d0c6c4f1e3si123456plh.42 - gsmtp", None),
        ("Queued mail for delivery", None),
    ],
)
def test_queue_id_of(reply, qid):
    assert queue_id_of(reply) == qid


async def test_reply_bytes_that_are_not_utf8_are_stored_and_shown_safely(tmp_path):
    """A server answers with raw 8-bit bytes, ANSI and markup: stored, escaped, never dropped."""
    from flowtui.core.headers import safe_text
    from flowtui.core.model import ProbeResult, ProbeState
    from flowtui.core.storage import Store

    async def evil(reader, writer):
        writer.write(b"220 evil.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"554 5.0.0 \x1b[31mdenied\x1b[0m [red]markup[/red] \x9b2J\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    srv = await asyncio.start_server(evil, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        out = await send_probe(plain(port), "a@example.test", "b@example.test", b"x")
    finally:
        srv.close()
    assert not out.ok and "554 5.0.0" in out.error
    out.error.encode("utf-8")  # storable as it is
    shown = safe_text(out.error)
    assert "\x1b" not in shown and "\x9b" not in shown and "\udc9b" not in shown
    with Store(tmp_path / "x.db") as store:
        store.write_result(ProbeResult(route="r", probe_id="p1", seq=1, state=ProbeState.SEND_FAILED,
                                       sent_at=1.0, error=out.error, error_phase=out.error_phase))
        # a header value with an undecodable byte (as email's parser keeps it) is stored too
        from flowtui.core.model import Hop
        store.write_result(ProbeResult(route="r", probe_id="p2", seq=2, state=ProbeState.DELIVERED, sent_at=2.0,
                                       hops=(Hop(0, from_host="caf\udce9.example", raw="from caf\udce9"),)))
        store.flush_sync(10)
        assert store.probe("p1").error.startswith("554 5.0.0")
        assert store.probe("p2").hops[0].from_host == "caf\ufffd.example"
        assert store.write_errors == 0
