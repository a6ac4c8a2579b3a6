"""`flowtui report --dmarc`: the DMARC summary as a report section in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from flowtui.cli import main
from flowtui.core.dmarc.importer import import_files
from flowtui.core.dmarc.summary import dmarc_summary
from flowtui.core.storage import Store

DATA = Path(__file__).resolve().parents[1] / "data" / "dmarc"


@pytest.fixture()
def cfg(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[monitor]\ndatabase = "d.db"\n[[routes]]\nname = "r"\nfrom = "a@example.com"\nto = "b@example.com"\n'
        '[routes.smtp]\nhost = "127.0.0.1"\n[routes.imap]\nhost = "127.0.0.1"\n'
    )
    with Store(tmp_path / "d.db") as store:
        files = sorted(str(p) for p in DATA.iterdir() if p.is_file() and p.name != "expected.toml")
        out = import_files(store, files)
        assert sum(o.status == "imported" for o in out) >= 5
        store.flush_sync()
        want = store.read(lambda c: dmarc_summary(c, since_s=3650 * 86400.0))
    return path, want


def report(capsys, path, *extra):
    code = main(["report", "-c", str(path), "--since", "3650d", "--dmarc", *extra])
    out = capsys.readouterr()
    assert code == 0 and "Traceback" not in out.err, out.err
    return out.out


def test_json_has_the_dmarc_section_with_the_summary_numbers(cfg, capsys):
    path, want = cfg
    doc = json.loads(report(capsys, path, "--format", "json"))
    [section] = [s for s in doc["sections"] if s["id"] == "dmarc"]
    assert section["reports"] == want["reports"] > 0
    got = {d["domain"]: (d["messages"], d["pass"], d["fail"]) for d in section["domains"]}
    assert got == {d["domain"]: (d["messages"], d["pass"], d["fail"]) for d in want["domains"]}
    # without --dmarc there is no such section
    assert main(["report", "-c", str(path), "--since", "3650d", "--format", "json"]) == 0
    assert all(s["id"] != "dmarc" for s in json.loads(capsys.readouterr().out)["sections"])


def test_table_fits_80_columns_and_escapes_reporter_text(cfg, capsys):
    path, want = cfg
    text = report(capsys, path)
    assert "DMARC aggregate reports" in text
    assert all(len(line) <= 80 for line in text.splitlines()), max(text.splitlines(), key=len)
    assert not any(ch in text for ch in "\x1b\x07")
    top = want["domains"][0]
    assert top["domain"] in text and top["top_sources"][0]["ip"] in text


def test_csv_and_html(cfg, capsys, tmp_path):
    path, want = cfg
    rows = list(csv.reader(io.StringIO(report(capsys, path, "--format", "csv"))))
    domain_rows = {r[0]: r for r in rows if len(r) > 3 and r[1] == "domain"}
    for d in want["domains"]:
        assert domain_rows[d["domain"]][3:6] == [str(d["messages"]), str(d["pass"]), str(d["fail"])]
    out = tmp_path / "r.html"
    report(capsys, path, "--format", "html", "-o", str(out))
    page = out.read_text()
    assert "<h2>DMARC aggregate reports</h2>" in page and page.count("<svg") >= len(want["domains"])
    assert "<script" not in page.lower() and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
