"""The DMARC corpus (tests/data/dmarc, expected.toml) imports with the expected numbers;
hostile and malformed files are refused with one clear line each, the rest still imported."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from flowtui.core.dmarc import parse
from flowtui.core.dmarc.importer import import_bytes, import_files
from flowtui.core.dmarc.parse import ReportError, parse_reports
from flowtui.core.dmarc.summary import dmarc_summary
from flowtui.core.storage import Store

DATA = Path(__file__).parent.parent / "data" / "dmarc"
EXPECTED = tomllib.loads((DATA / "expected.toml").read_text())
NOW = 1793577600 + 3 * 86400  # three days after the corpus' reports end


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "d.db") as s:
        yield s


def test_corpus_imports_with_the_expected_numbers(store):
    files = EXPECTED["file"]
    outcomes = import_files(store, [str(DATA / f["name"]) for f in files])
    assert len(outcomes) == len(files)
    for want, got in zip(files, outcomes):
        assert got.status == want["status"], (want["name"], got.line())
        if want["status"] == "imported":
            r = got.report
            assert (r.org, r.report_id, r.domain) == (want["org"], want["report_id"], want["domain"])
            assert len(r.records) == want["records"]
            assert r.messages == want["messages"]
            assert sum(x.count for x in r.records if x.dmarc_pass) == want["passed"]
        if want["status"] == "error":
            assert want["error"] in got.detail, got.line()
            assert "\n" not in got.line() and len(got.line()) < 300
    totals = store.read(lambda c: c.execute(
        "SELECT (SELECT COUNT(*) FROM dmarc_reports), COUNT(*), SUM(count) FROM dmarc_records").fetchone())
    assert tuple(totals) == (EXPECTED["totals"]["reports"], EXPECTED["totals"]["records"], EXPECTED["totals"]["messages"])


def test_schema_variations_are_read(store):
    bis = parse_reports((DATA / "mail.example.net!example.org!1793491200!1793577599.xml").read_bytes())[0]
    assert bis.policy["np"] == "reject" and bis.policy["discovery_method"] == "treewalk"
    assert bis.records[0].auth[0].selector == "k1" and bis.records[0].envelope_from == "example.org"
    google = parse_reports((DATA / "google.com!example.com!1793491200!1793577599.zip").read_bytes())[0]
    assert [a.domain for a in google.records[1].auth if a.method == "dkim"] == ["example.com", "esp.example.net"]
    assert google.version is None and google.policy["pct"] == "100"
    ms = parse_reports((DATA / "enterprise.protection.outlook.com!example.com!1793491200!1793577600.xml.gz").read_bytes())[0]
    assert ms.records[1].source_ip == "2001:db8::25" and ms.records[1].disposition == "quarantine"
    assert ms.records[0].auth[1].scope == "mfrom"
    yahoo = parse_reports((DATA / "yahoo.com!example.com!1793491200!1793577599.xml.gz").read_bytes())[0]
    assert yahoo.records[1].reasons == (("forwarded", "looks forwarded"),)
    small = parse_reports((DATA / "small-body.eml").read_bytes())[0]
    assert small.domain == "example.com" and small.email is None and "sp" not in small.policy


def test_summary_numbers(store):
    import_files(store, [str(p) for p in sorted(DATA.iterdir()) if p.is_file()])
    s = store.read(lambda c: dmarc_summary(c, since_s=30 * 86400, now=NOW))
    by = {d["domain"]: d for d in s["domains"]}
    com = by["example.com"]
    assert (com["messages"], com["pass"], com["fail"]) == (235, 219, 16)
    assert com["top_sources"][0]["ip"] == "192.0.2.10" and com["top_sources"][0]["messages"] == 203
    assert [x["ip"] for x in com["failing_sources"]] == ["198.51.100.23", "203.0.113.77", "2001:db8::25"]
    assert {x["ip"] for x in com["new_sources"]} == {x["ip"] for x in com["top_sources"]}  # all first seen this week
    assert com["policy"]["p"] == "quarantine"  # the newest report's
    assert by["example.org"]["pass_rate"] == pytest.approx(9 / 13)
    later = store.read(lambda c: dmarc_summary(c, since_s=30 * 86400, now=NOW + 10 * 86400))
    assert later["domains"][0]["new_sources"] == []  # seen 13 days ago: not new any more


# ---- hostile input, generated here rather than committed ------------------------------

def _zip_bomb(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("report.xml", "w", force_zip64=True) as f:
            chunk = b"<" + b"a" * (1024 * 1024 - 1)
            for _ in range(size // len(chunk)):
                f.write(chunk)
    return buf.getvalue()


def test_zip_bomb_is_refused_without_expanding_it(store, monkeypatch):
    bomb = _zip_bomb(parse.MAX_XML_BYTES + 2 * 1024 * 1024)
    assert len(bomb) < 200_000  # ~52 MB of zeros in a small file
    out = import_bytes(store, "bomb.zip", bomb)
    assert [o.status for o in out] == ["error"]
    assert "decompression bomb" in out[0].detail


def test_zip_bomb_that_lies_about_its_size():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("report.xml", b"<" + b"a" * (8 * 1024 * 1024))
    data = bytearray(buf.getvalue())
    # declare 1000 bytes in the local header and the central directory
    local = data.index(b"PK\x03\x04")
    data[local + 22:local + 26] = (1000).to_bytes(4, "little")
    central = data.index(b"PK\x01\x02")
    data[central + 24:central + 28] = (1000).to_bytes(4, "little")
    with pytest.raises(ReportError) as err:
        parse.unzip(bytes(data), limit=1024 * 1024)
    assert "zip" in str(err.value) and "\n" not in str(err.value)


def test_gzip_bomb_is_refused(store):
    bomb = gzip.compress(b"\0" * (parse.MAX_XML_BYTES + 1024 * 1024), compresslevel=9)
    assert len(bomb) < 200_000
    out = import_bytes(store, "bomb.xml.gz", bomb)
    assert [o.status for o in out] == ["error"]
    assert "gzip expands beyond" in out[0].detail


def test_gzip_bomb_inside_a_mail(store):
    from email.message import EmailMessage

    m = EmailMessage()
    m["Subject"] = "Report domain: example.com"
    m.set_content("report attached")
    m.add_attachment(gzip.compress(b" " * (parse.MAX_XML_BYTES + 1), compresslevel=9),
                     maintype="application", subtype="gzip", filename="r.xml.gz")
    out = import_bytes(store, "bomb.eml", bytes(m))
    assert out[0].status == "error" and "gzip expands beyond" in out[0].detail


def test_raw_size_limit(store, tmp_path, monkeypatch):
    monkeypatch.setattr(parse, "MAX_RAW_BYTES", 1000)
    monkeypatch.setattr("flowtui.core.dmarc.importer.MAX_RAW_BYTES", 1000)
    big = tmp_path / "big.xml"
    big.write_bytes(b"<feedback>" + b" " * 2000 + b"</feedback>")
    out = import_files(store, [str(big)])
    assert out[0].status == "error" and "limit" in out[0].detail


def test_entity_expansion_is_refused_quickly():
    import time

    t0 = time.monotonic()
    with pytest.raises(ReportError, match="DTD or entities"):
        parse_reports((DATA / "bad" / "billion-laughs.xml").read_bytes())
    assert time.monotonic() - t0 < 1.0


def test_cli_import_prints_a_line_per_file_and_fails_when_one_failed(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[monitor]\ndatabase = "d.db"\n[[routes]]\nname = "r"\nfrom = "a@example.com"\nto = "b@example.com"\n'
        '[routes.smtp]\nhost = "127.0.0.1"\n[routes.imap]\nhost = "127.0.0.1"\n'
    )
    files = [str(DATA / "yahoo.com!example.com!1793491200!1793577599.xml.gz"), str(DATA / "bad" / "xxe.xml"),
             str(DATA / "small-body.eml"), str(tmp_path / "missing.xml")]
    run = lambda *a: subprocess.run([sys.executable, "-m", "flowtui", "dmarc", *a], capture_output=True, text=True)  # noqa: E731
    p = run("import", "-c", str(cfg), *files)
    assert p.returncode == 1
    assert "yahoo.com!example.com!1793491200!1793577599.xml.gz: imported: Yahoo report" in p.stdout
    assert "small-body.eml: imported" in p.stdout
    assert "xxe.xml: error: refused" in p.stderr and "missing.xml: error: no such file" in p.stderr
    assert "Traceback" not in p.stderr
    assert "[bold red]boo[/]" in p.stdout and "\\[" not in p.stdout  # plain text: shown as written
    p = run("import", "-c", str(cfg), files[0])
    assert p.returncode == 0 and ": duplicate:" in p.stdout
    p = run("report", "-c", str(cfg), "--since", "365d", "--format", "json")
    assert p.returncode == 0, p.stderr
    import json

    doc = json.loads(p.stdout)
    assert doc["reports"] == 2 and doc["domains"][0]["messages"] == 21
    p = run("report", "-c", str(cfg), "--since", "365d")
    assert p.returncode == 0 and "example.com" in p.stdout and "203.0.113.77" in p.stdout
    p = run("report", "-c", str(cfg), "--since", "soon")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--since" in p.stderr


@pytest.mark.parametrize("change, error", [
    (("<count>120</count>", "<count>99999999999999999999999999</count>"), "record 1: row/count is not a plausible number"),
    (("<count>120</count>", "<count>-5</count>"), "record 1: row/count is negative"),
    (("<begin>1793491200</begin>", "<begin>99999999999999</begin>"), "date_range/begin is implausibly large"),
    (("<end>1793577599</end>", "<end>1</end>"), "date_range ends (1) before it begins"),
    (("<source_ip>192.0.2.10</source_ip>", "<source_ip></source_ip>"), "record 1: row/source_ip"),
    (("<domain>example.com</domain>", ""), "missing policy_published/domain"),
])
def test_broken_values_are_one_line_errors(store, change, error):
    xml = (DATA / "duplicate-google.xml").read_text().replace(*change, 1)
    out = import_bytes(store, "x.xml", xml.encode())
    assert out[0].status == "error" and error in out[0].detail, out[0].line()


def test_a_database_from_before_dmarc_gains_the_dmarc_tables(tmp_path):
    import sqlite3

    from flowtui.core import storage

    before = [m.__name__ for m in storage._MIGRATIONS].index("_migrate_v3_dmarc")  # the version before DMARC

    path = tmp_path / "old.db"
    with Store(path):
        pass
    conn = sqlite3.connect(path)
    for table in ("dmarc_reports", "dmarc_records", "dmarc_rdns", "dmarc_imap_seen"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute(f"PRAGMA user_version = {before}")
    conn.commit()
    conn.close()
    with Store(path) as store:
        out = import_files(store, [str(DATA / "small-body.eml")])
        assert out[0].status == "imported"
        names = store.read(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")})
    assert {"dmarc_reports", "dmarc_records", "dmarc_rdns", "dmarc_imap_seen", "probes"} <= names


def test_import_refuses_what_is_not_a_regular_file_without_blocking(store, tmp_path):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    out = import_files(store, [str(fifo), "/dev/zero", str(tmp_path)])
    assert [o.status for o in out] == ["error", "error", "error"]
    assert "not a regular file" in out[0].detail and "not a regular file" in out[1].detail
    assert "is a directory" in out[2].detail
