"""Data-driven: tests/data/auth/*.eml and tests/data/bounces/*.eml."""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from flowtui.core.headers import parse_authentication_results, parse_bounce
from flowtui.core.model import MethodResult

DATA = Path(__file__).resolve().parents[1] / "data"
AUTH = sorted(p.stem for p in (DATA / "auth").glob("*.eml"))
BOUNCES = sorted(p.stem for p in (DATA / "bounces").glob("*.eml"))


def _msg(path: Path) -> email.message.Message:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)


def _method(r: MethodResult | None) -> dict | None:
    if r is None:
        return None
    return {"result": r.result, "reason": r.reason, "properties": dict(r.properties)}


@pytest.mark.parametrize("name", AUTH)
def test_authentication_results(name: str) -> None:
    expected = json.loads((DATA / "auth" / f"{name}.expected.json").read_text())
    assert expected["source"]
    res = parse_authentication_results(
        _msg(DATA / "auth" / f"{name}.eml"), trusted_authserv_ids=expected.get("trusted")
    )
    assert res.authserv_id == expected["authserv_id"]
    assert _method(res.spf) == expected["spf"]
    assert _method(res.dkim) == expected["dkim"]
    assert _method(res.dmarc) == expected["dmarc"]


def test_auth_accepts_header_values_and_keeps_all_results() -> None:
    value = (
        "mx.example.net; dkim=pass header.d=a.example; dkim=fail header.d=b.example;"
        " spf=pass smtp.mailfrom=x@a.example"
    )
    res = parse_authentication_results([f"Authentication-Results: {value}"])
    assert [r.method for r in res.results] == ["dkim", "dkim", "spf"]
    assert res.dkim is not None and res.dkim.prop("HEADER.D") == "a.example"
    assert parse_authentication_results(value) == res


def test_auth_untrusted_only_gives_nothing_and_a_warning() -> None:
    res = parse_authentication_results(["evil.example; spf=pass"], trusted_authserv_ids=["mx.example.net"])
    assert res.spf is None and res.authserv_id is None
    assert res.warnings


def test_auth_missing_header() -> None:
    res = parse_authentication_results(email.message_from_string("Subject: x\n\nx\n"))
    assert res.results == () and res.warnings


@pytest.mark.parametrize("name", BOUNCES)
def test_bounce(name: str) -> None:
    expected = json.loads((DATA / "bounces" / f"{name}.expected.json").read_text())
    assert expected["source"]
    bounce = parse_bounce(_msg(DATA / "bounces" / f"{name}.eml"))
    if expected["bounce"] is None:
        assert bounce is None
        return
    assert bounce is not None
    got = asdict(bounce)
    got.pop("warnings")
    assert got == expected["bounce"]


def test_bounce_of_text_rfc822_headers_part() -> None:
    raw = (
        "From: MAILER-DAEMON@example.net\nSubject: Returned mail\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nfailed\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; a@example.org\nAction: delayed\nStatus: 4.4.1\n"
        "--b\nContent-Type: text/rfc822-headers\n\nFrom: probe@example.com\n"
        "Message-ID: <probe-42@example.com>\nSubject: probe\n--b--\n"
    )
    bounce = parse_bounce(email.message_from_string(raw))
    assert bounce is not None
    assert (bounce.kind, bounce.action, bounce.status) == ("dsn", "delayed", "4.4.1")
    assert bounce.original_message_id == "<probe-42@example.com>"
    assert bounce.recipient == "a@example.org"
