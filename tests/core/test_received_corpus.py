"""Data-driven: every tests/data/received/NAME.eml against NAME.expected.json."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest

from flowtui.core.headers import parse_received_chain

DATA = Path(__file__).resolve().parents[1] / "data" / "received"
CASES = sorted(p.stem for p in DATA.glob("*.eml"))


def _load(name: str) -> tuple[email.message.Message, dict]:
    raw = (DATA / f"{name}.eml").read_bytes()
    expected = json.loads((DATA / f"{name}.expected.json").read_text(encoding="utf-8"))
    return email.message_from_bytes(raw, policy=email.policy.compat32), expected


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40
    bug_cases = [
        c for c in CASES if "BUG" in json.loads((DATA / f"{c}.expected.json").read_text())["source"]
    ]
    assert len(bug_cases) >= 10


@pytest.mark.parametrize("name", CASES)
def test_fixture_has_expected_and_source(name: str) -> None:
    _, expected = _load(name)
    assert expected["source"].strip()


@pytest.mark.parametrize("name", CASES)
def test_received_chain_matches_expected(name: str) -> None:
    msg, expected = _load(name)
    expected.pop("source")
    assert parse_received_chain(msg).to_json_dict() == expected


@pytest.mark.parametrize("name", CASES)
def test_list_input_gives_the_same_result(name: str) -> None:
    msg, _ = _load(name)
    values = msg.get_all("Received") or []
    assert parse_received_chain(values) == parse_received_chain(msg)
    prefixed = [f"Received: {v}" for v in values]
    assert parse_received_chain(prefixed).to_json_dict() == parse_received_chain(msg).to_json_dict()


def test_lab_chain_is_clean() -> None:
    msg, _ = _load("lab-postfix-dovecot-lmtp")
    result = parse_received_chain(msg)
    assert result.warnings == ()
    assert [h.by_host for h in result.hops] == ["hop1.lab.test", "hop2.lab.test", "mailbox.lab.test"]
    assert all(h.delay_s is None or h.delay_s >= 0 for h in result.hops)
    assert [h.tls for h in result.hops] == [True, False, False]


def test_negative_delay_is_kept_and_warned() -> None:
    msg, _ = _load("oitc-eudora-ut-via-skew")
    result = parse_received_chain(msg)
    assert result.hops[3].delay_s == -288.0
    assert any("clock skew" in w and w.startswith("hop 3:") for w in result.warnings)


def test_x_received_is_not_a_hop() -> None:
    msg, _ = _load("gmail-2002-by-ipv6-smtp-id")
    assert msg.get_all("X-Received")
    assert len(parse_received_chain(msg).hops) == 1
