"""Property tests: the parsers never raise and --json always fits the schema."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtui.core.dates import parse_date
from flowtui.core.headers import (
    parse_authentication_results,
    parse_bounce,
    parse_received_chain,
    safe_text,
)
from flowtui.core.model import HOP_JSON_KEYS

DATA = Path(__file__).resolve().parents[1] / "data" / "received"
SEEDS = [
    v
    for p in sorted(DATA.glob("*.eml"))
    for v in (
        email.message_from_bytes(p.read_bytes(), policy=email.policy.compat32).get_all("Received")
        or []
    )
]
TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

HOP_TYPES = {
    "index": (int,),
    "tls": (bool, type(None)),
    "delay_s": (float, type(None)),
}


def check_schema(doc: object) -> None:
    """The DESIGN.md "Paths" JSON, checked by hand (no jsonschema)."""
    doc = json.loads(json.dumps(doc))  # what --json prints
    assert isinstance(doc, dict) and set(doc) == {"hops", "total_s", "warnings"}
    assert doc["total_s"] is None or isinstance(doc["total_s"], float)
    assert isinstance(doc["warnings"], list) and all(isinstance(w, str) for w in doc["warnings"])
    assert isinstance(doc["hops"], list)
    for i, hop in enumerate(doc["hops"]):
        assert isinstance(hop, dict) and list(hop) == list(HOP_JSON_KEYS)
        assert hop["index"] == i and type(hop["index"]) is int
        assert hop["tls"] in (True, False, None)
        assert hop["delay_s"] is None or type(hop["delay_s"]) is float
        assert hop["timestamp"] is None or TS.fullmatch(hop["timestamp"])
        for key in HOP_JSON_KEYS:
            if key not in HOP_TYPES and key != "timestamp":
                assert hop[key] is None or isinstance(hop[key], str), key
        if i == 0:
            assert hop["delay_s"] is None


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["cut", "insert", "delete", "dup"]))
        pos = draw(st.integers(0, max(0, len(text))))
        if op == "cut":
            text = text[:pos]
        elif op == "insert":
            text = text[:pos] + draw(st.text(alphabet="()[]<>;:=@ \t\r\n\x00\x1b\"\\0123456789+-TLSabcfromby", max_size=8)) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 10)) :]
        else:
            text = text[:pos] + text
    return text


settings.register_profile("path", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("path")


@given(st.lists(st.text(), max_size=6))
def test_arbitrary_text_never_raises_and_fits_schema(values: list[str]) -> None:
    check_schema(parse_received_chain(values).to_json_dict())


@given(st.lists(mutated(), min_size=1, max_size=5))
def test_mutated_real_headers_never_raise_and_fit_schema(values: list[str]) -> None:
    check_schema(parse_received_chain(values).to_json_dict())


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_as_message(data: bytes) -> None:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    check_schema(parse_received_chain(msg).to_json_dict())
    parse_authentication_results(msg)
    parse_bounce(msg)


@given(st.text())
def test_dates_never_raise(text: str) -> None:
    dt, warning = parse_date(text)
    assert dt is None or dt.utcoffset().total_seconds() == 0
    assert dt is not None or warning


@given(st.text())
def test_auth_results_never_raise(text: str) -> None:
    res = parse_authentication_results([text])
    assert all(r.method and r.result is not None for r in res.results)


@given(st.text())
def test_safe_text_leaves_no_control_characters(text: str) -> None:
    out = safe_text(text)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", out)
    assert not re.search(r"(?<!\\)\[[a-z#/@][^[]*?]", out)


def test_seed_corpus_is_loaded() -> None:
    assert len(SEEDS) >= 40


def test_path_modules_load_without_textual_or_rich() -> None:
    import subprocess
    import sys

    code = (
        "import sys, flowtui.core.headers, flowtui.core.dates, flowtui.core.model, flowtui.pathcmd;"
        "bad = [m for m in ('textual', 'rich') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": root}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
