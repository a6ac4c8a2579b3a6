"""Whatever bytes arrive, the DMARC parser answers with reports or one ReportError line."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowtui.core.dmarc.parse import ReportError, parse_reports

GOOD = (Path(__file__).parent.parent / "data" / "dmarc" / "duplicate-google.xml").read_bytes()


def _check(data: bytes) -> None:
    try:
        reports = parse_reports(data)
    except ReportError as exc:
        text = str(exc)
        assert text and "\n" not in text and len(text) < 400, text
        return
    for r in reports:
        assert r.org and r.report_id and r.domain and r.end >= r.begin


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("r.xml", data)
    return buf.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes(data):
    _check(data)
    _check(b"<" + data)
    _check(b"\x1f\x8b" + data)
    _check(b"PK\x03\x04" + data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.sampled_from(["xml", "gz", "zip"]))
def test_a_good_report_with_bytes_changed(flips, container):
    data = bytearray(GOOD)
    for pos, value in flips:
        data[pos] = value
    raw = bytes(data)
    _check({"xml": raw, "gz": gzip.compress(raw), "zip": _zip(raw)}[container])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GOOD)))
def test_a_good_report_cut_short(n):
    _check(GOOD[:n])
    _check(gzip.compress(GOOD)[:n])


def test_odd_documents():
    for data in (
        b'<?xml version="1.0" encoding="bogus"?><feedback/>',
        b'<?xml version="1.0" encoding="utf-16"?><feedback/>',
        b"<feedback>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</feedback>",
        b"Subject: x\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: application/zip\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!!\r\n--b--\r\n",
        b"\xef\xbb\xbf" + GOOD,
    ):
        _check(data)
