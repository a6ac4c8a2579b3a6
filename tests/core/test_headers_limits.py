"""Hostile Received headers found by trying to break `flowtui path`: bounded work, no crash."""

from __future__ import annotations

from flowtui.core.headers import MAX_RECEIVED_CHARS, parse_received_chain


def test_deeply_nested_comments_parse_quickly_without_recursion_errors():
    h = "from a " + "(" * 3000 + "x" + ")" * 3000 + " by b.example.com; Thu, 3 Dec 2026 10:00:00 +0000"
    result = parse_received_chain([h])  # was a RecursionError (and 28 s)
    assert not any("unreadable" in w for w in result.warnings)
    assert result.hops[0].by_host == "b.example.com"


def test_a_huge_header_is_cut_and_said_so():
    h = "from a by b; Thu, 3 Dec 2026 10:00:00 +0000 " + "x" * (MAX_RECEIVED_CHARS * 10)
    result = parse_received_chain([h])
    assert any("cut to" in w for w in result.warnings)
    assert result.hops[0].from_host == "a"


def test_envelope_from_inside_a_nested_comment_is_still_found():
    h = "from a (x (envelope-from <bounce@example.com>)) by b; Thu, 3 Dec 2026 10:00:00 +0000"
    assert parse_received_chain([h]).hops[0].envelope_from == "bounce@example.com"
