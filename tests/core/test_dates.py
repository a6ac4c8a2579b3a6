"""Data-driven date cases from tests/data/dates.toml."""

from __future__ import annotations

import email.utils
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from flowtui.core.dates import parse_date

CASES = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "data" / "dates.toml").read_text(encoding="utf-8")
)["case"]


@pytest.mark.parametrize("case", CASES, ids=[c["source"][:40] for c in CASES])
def test_date_case(case: dict) -> None:
    dt, warning = parse_date(case["text"])
    if not case["utc"]:
        assert dt is None
        assert warning
        return
    assert dt is not None
    assert dt.tzinfo is not None and dt.utcoffset().total_seconds() == 0
    assert dt == datetime.fromisoformat(case["utc"]).replace(tzinfo=timezone.utc)
    assert (warning is not None) == case.get("warn", False), warning


def test_stdlib_gets_some_of_these_wrong() -> None:
    """Why the project has its own date parser: the standard library does not
    apply RFC 5322's two-digit-year rule to AM/PM, fractional seconds etc."""
    wrong = 0
    for case in CASES:
        if not case["utc"]:
            continue
        try:
            got = email.utils.parsedate_to_datetime(case["text"])
        except (TypeError, ValueError, IndexError):
            wrong += 1
            continue
        want = datetime.fromisoformat(case["utc"]).replace(tzinfo=timezone.utc)
        if got.tzinfo is None or got != want:
            wrong += 1
    assert wrong >= 3


def test_non_string_input_does_not_raise() -> None:
    assert parse_date(None)[0] is None
    assert parse_date(12345)[0] is None  # type: ignore[arg-type]
