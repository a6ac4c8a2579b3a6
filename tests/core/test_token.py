"""Probe tokens: only this installation's untampered tokens verify; content is checked."""

from __future__ import annotations

import email
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowtui.core.token import (
    CONTENT_HEADER,
    HEADER,
    build_message,
    check_content,
    load_secret,
    make_token,
    verify_token,
)

KEY = b"k" * 64


def probe(route="hq", seq=5, attach=0, body="hello"):
    return build_message(KEY, route, seq, "a@example.test", "b@example.test", "flowtui probe", body, attach)


def test_round_trip_and_message_id():
    p = probe("route with spaces/and.dots", 42, attach=3000)
    msg = email.message_from_bytes(p.data)
    tok = verify_token(KEY, msg[HEADER])
    assert tok.route == "route with spaces/and.dots" and tok.seq == 42 and tok.probe_id == p.probe_id
    assert msg["Message-ID"] == p.message_id and p.token in p.message_id
    assert msg[CONTENT_HEADER] == f"sha256={tok.content}"
    assert check_content(msg, tok)
    # the token header is never folded or encoded (servers search for it)
    line = next(ln for ln in p.data.split(b"\r\n") if ln.startswith(HEADER.encode()))
    assert line == f"{HEADER}: {p.token}".encode()


def test_other_installations_and_tampering_do_not_verify():
    p = probe()
    assert verify_token(b"x" * 64, p.token) is None
    parts = p.token.split(".")
    for i in range(1, 7):
        bad = parts.copy()
        bad[i] = bad[i][:-1] + ("0" if bad[i][-1] != "0" else "1")
        assert verify_token(KEY, ".".join(bad)) is None, i
    assert verify_token(KEY, None) is None and verify_token(KEY, "") is None
    assert verify_token(KEY, p.token + ".x") is None


def test_content_mismatch_is_detected():
    p = probe(attach=500)
    changed = p.data.replace(b"hello", b"HELLO")
    msg = email.message_from_bytes(changed)
    tok = verify_token(KEY, msg[HEADER])
    assert tok is not None and not check_content(msg, tok)


def test_secret_is_created_private_and_reused(tmp_path):
    path = tmp_path / "db.secret"
    key = load_secret(path)
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(path) == key
    path.chmod(0o644)
    assert load_secret(path) == key and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_short_secret_is_a_one_line_error(tmp_path):
    from flowtui.core.errors import UserError

    path = tmp_path / "s"
    path.write_text("short\n")
    with pytest.raises(UserError) as exc:
        load_secret(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


@given(st.text(max_size=300))
def test_arbitrary_text_never_verifies_or_raises(text):
    assert verify_token(KEY, text) is None


@given(st.text(min_size=1, max_size=40), st.integers(0, 10**9), st.integers(0, 2**45))
def test_any_route_name_round_trips(route, seq, ms):
    tok = verify_token(KEY, make_token(KEY, route, seq, ms, "0" * 16))
    assert (tok.route, tok.seq, tok.sent_ms) == (route, seq, ms)
