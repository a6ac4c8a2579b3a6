"""flowtui report and flowtui export on a database of synthetic probes (issue 7)."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import pytest

from exact import exact_pct
import tomli_w

from flowtui.cli import main
from flowtui.core.model import Hop, ProbeResult, ProbeState
from flowtui.core.rollup import DAY, Maintainer
from flowtui.core.storage import AlertRecord, Store
from flowtui.report import build_report, render

PASSWORD = "s3cret-Pa55word-xyz"
EVIL = "<script>alert(1)</script>&"
EVIL_HOST = '<img src=x onerror="alert(2)">'
ROUTES = ("plain", EVIL)




@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    db = d / "flowtui.db"
    now = time.time()
    rnd = random.Random(5)
    written = []
    with Store(db) as store:
        for route in ROUTES:
            for i in range(int(40 * DAY // 1800)):
                sent = now - 40 * DAY + i * 1800 + rnd.uniform(0, 30)
                u = rnd.random()
                state = ProbeState.DELIVERED if u < 0.9 else ProbeState.LOST if u < 0.95 else ProbeState.JUNK
                sub = rnd.lognormvariate(-1, 0.3)
                tra = rnd.lognormvariate(1, 0.5) if state is not ProbeState.LOST else None
                ts = datetime.fromtimestamp(int(sent), timezone.utc)
                hops = () if tra is None else (
                    Hop(index=0, by_host="a.test", tls=True, timestamp=ts),
                    Hop(index=1, by_host=EVIL_HOST if route == EVIL else "b.test", tls=rnd.random() < 0.8,
                        timestamp=ts + timedelta(seconds=2), delay_s=float(rnd.randint(0, 4))),
                )
                r = ProbeResult(
                    route=route, probe_id=f"{i}-{route}", seq=i + 1, state=state, sent_at=sent, submit_s=sub,
                    transit_s=tra, total_s=None if tra is None else sub + tra, hops=hops)
                store.write_result(r)
                written.append((r.route, r.state.value, r.sent_at, r.submit_s, r.transit_s, r.total_s))
        store.write_alert(AlertRecord(id="a1", route="plain", rule="latency", severity="warn", state="resolved",
                                      fired_at=now - 3 * DAY, resolved_at=now - 3 * DAY + 600, message="slow"))
        store.flush_sync()
        Maintainer(store, 30 * DAY, 730 * DAY, grace_s=660).run_once(now=now)
    doc = {
        "monitor": {"database": str(db), "retention": "30d"},
        "routes": [{
            "name": name, "from": "a@example.test", "to": "b@example.test",
            "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none", "username": "a", "password": PASSWORD},
            "imap": {"host": "127.0.0.1", "port": 1143, "security": "none", "username": "b", "password": PASSWORD},
        } for name in ROUTES],
    }
    cfg = d / "flowtui.toml"
    cfg.write_text(tomli_w.dumps(doc))
    cfg.chmod(0o600)
    generated = d / "generated.db"  # what was written, before any pruning: the roll-ups' truth
    g = sqlite3.connect(generated)
    g.execute("CREATE TABLE probes (route, state, sent_at, submit_s, transit_s, total_s)")
    g.executemany("INSERT INTO probes VALUES (?, ?, ?, ?, ?, ?)", written)
    g.commit()
    return cfg, db, now, generated


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert PASSWORD not in out + err
    return code, out, err


def direct(db, route, since, until):
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT state, submit_s, transit_s, total_s FROM probes WHERE route = ? AND sent_at >= ? "
                        "AND sent_at < ?", (route, since, until)).fetchall()
    arrived = [r for r in rows if r[0] in ("delivered", "late")]
    return {
        "sent": len(rows),
        "lost": sum(r[0] == "lost" for r in rows),
        "junk": sum(r[0] == "junk" for r in rows),
        "submit": [r[1] for r in rows if r[1] is not None],
        "transit": [r[2] for r in arrived],
        "total": [r[3] for r in arrived],
    }


@pytest.mark.parametrize("days,source", [(7, "raw"), (20, "raw"), (39, "rollup+raw")])
def test_report_percentiles_match_the_rows(setup, capsys, days, source):
    cfg, db, now, generated = setup
    since = datetime.fromtimestamp(now - days * DAY, timezone.utc).replace(microsecond=0)
    until = datetime.fromtimestamp(now, timezone.utc).replace(microsecond=0)
    code, out, _ = run(capsys, "report", "-c", str(cfg), "--since", since.isoformat(), "--until", until.isoformat(),
                       "--format", "json")
    assert code == 0
    report = json.loads(out)
    for r in report["sections"][0]["routes"]:
        assert r["source"] == source
        start = datetime.fromisoformat(r["since"]).timestamp()
        # raw: the report's own database rows; roll-ups: every probe written (raw rows are pruned)
        exp = direct(db if r["exact"] else generated, r["route"], start, until.timestamp())
        assert (r["sent"], r["lost"], r["junk"]) == (exp["sent"], exp["lost"], exp["junk"])
        for m in ("submit", "transit", "total"):
            for p in (50, 90, 99):
                want = exact_pct(exp[m], p)
                if r["exact"]:
                    assert r[m][f"p{p}"] == pytest.approx(want, rel=1e-12)
                else:
                    assert abs(r[m][f"p{p}"] - want) <= 0.01 * want + 0.001
            assert r[m]["max"] == pytest.approx(max(exp[m]))
        assert r["slowest_hop"]["index"] == 1
        assert 0 < r["tls"]["coverage_pct"] < 100
    plain = next(r for r in report["sections"][0]["routes"] if r["route"] == "plain")
    assert plain["alerts"] == {"fired": 1, "firing_s": 600.0}
    trend = report["sections"][1]
    assert trend["step_s"] == (3600 if days <= 14 else 86400)
    assert sum(p["count"] for p in trend["routes"]["plain"]) == plain["sent"]


def test_table_fits_80_columns_and_escapes_control_characters(setup, capsys):
    cfg, _, _, _ = setup
    for since in ("7d", "39d"):
        code, out, _ = run(capsys, "report", "-c", str(cfg), "--since", since)
        assert code == 0
        assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)
        assert "plain" in out and "p90" in out and "slowest hop" in out and "trend" in out


def test_html_is_one_self_contained_file_with_escaped_names(setup, capsys, tmp_path):
    cfg, _, _, _ = setup
    target = tmp_path / "r.html"
    code, _, _ = run(capsys, "report", "-c", str(cfg), "--since", "10d", "--format", "html", "-o", str(target))
    assert code == 0
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
    assert "src=" not in page.replace("&lt;img src=x", "") and "href=" not in page
    assert "@import" not in page and "url(" not in page


def test_csv_report_and_an_extra_section_render_in_every_format(setup):
    cfg, db, now, generated = setup
    conn = sqlite3.connect(db)
    report = build_report(conn, ["plain"], now - 3 * DAY, now, now, 30 * DAY)
    rows = list(csv.reader(io.StringIO(render(report, "csv"))))
    assert rows[0][0] == "route" and rows[1][0] == "plain"
    report["sections"].append({"id": "dmarc-test", "title": "DMARC <aggregate>", "reporter": "example.org",
                               "records": [{"source_ip": "192.0.2.1", "count": 3, "disposition": "none"}]})
    for fmt in ("table", "json", "csv", "html"):
        text = render(report, fmt)
        assert "192.0.2.1" in text
    assert "DMARC &lt;aggregate&gt;" in render(report, "html")


def test_a_registered_builder_adds_its_section_and_renderer(setup):
    from flowtui import report as rep

    cfg, db, now, _ = setup
    conn = sqlite3.connect(db)

    def builder(conn, routes, since, until, now):
        n = conn.execute("SELECT COUNT(*) FROM probes WHERE sent_at >= ?", (since,)).fetchone()[0]
        return {"id": "extra-test", "title": "Extra", "probes": n}

    rep.register_builder(builder)
    rep.register_section("extra-test", table=lambda s: f"EXTRA {s['probes']}")
    try:
        report = build_report(conn, ["plain"], now - DAY, now, now, 30 * DAY)
        assert report["sections"][-1]["id"] == "extra-test" and report["sections"][-1]["probes"] > 0
        assert f"EXTRA {report['sections'][-1]['probes']}" in render(report, "table")
        assert "Extra" in render(report, "html")  # no html renderer registered: the generic one
    finally:
        rep.SECTION_BUILDERS.remove(builder)
        rep.SECTION_RENDERERS.pop("extra-test")


@pytest.mark.parametrize("args,needle", [
    (["--since", "yesterday"], "--since: expected a duration"),
    (["--route", "plian"], '--route: no route named "plian"'),
    (["-o", "/nonexistent/dir/r.txt"], "-o: cannot write /nonexistent/dir/r.txt"),
    (["-o", ""], "-o: expected a file name"),
    (["-o", "."], "-o: . is a directory"),
    (["-o", "/"], "-o: / is a directory"),
    (["--since", "1d", "--until", "2d"], "--until:"),
    (["--since", "3000-01-01"], "--since: 3000-01-01 is not in the past (the window ends now)"),
])
def test_bad_input_is_one_line_and_exit_2(setup, capsys, args, needle):
    cfg, _, _, _ = setup
    for cmd in ("report", "export"):
        code, out, err = run(capsys, cmd, "-c", str(cfg), *args)
        assert code == 2 and out == ""
        assert err.startswith("flowtui: ") and needle in err and err.count("\n") == 1, err


def test_missing_database_is_an_error_and_not_created(tmp_path, capsys, setup):
    cfg, _, _, _ = setup
    doc = cfg.read_text().replace(str(setup[1]), str(tmp_path / "none.db"))
    other = tmp_path / "c.toml"
    other.write_text(doc)
    other.chmod(0o600)
    code, _, err = run(capsys, "report", "-c", str(other))
    assert code == 2 and "monitor.database: no such file" in err and str(other) in err
    assert not (tmp_path / "none.db").exists()


def test_export_jsonl_and_csv_stream_every_probe_and_hop_without_secrets(setup, capsys, tmp_path):
    cfg, db, now, generated = setup
    conn = sqlite3.connect(db)
    want = conn.execute("SELECT COUNT(*) FROM probes WHERE sent_at >= ?", (now - 10 * DAY - 1,)).fetchone()[0]
    hops = conn.execute("SELECT COUNT(*) FROM hops JOIN probes USING (probe_id) WHERE sent_at >= ?",
                        (now - 10 * DAY - 1,)).fetchone()[0]
    code, out, _ = run(capsys, "export", "-c", str(cfg), "--since", "10d", "--format", "jsonl")
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert abs(len(lines) - want) <= 2  # the window starts a moment after the count above
    assert [x["sent_at"] for x in lines] == sorted(x["sent_at"] for x in lines)
    assert abs(sum(len(x["hops"]) for x in lines) - hops) <= 4
    assert {x["route"] for x in lines} == set(ROUTES)
    target = tmp_path / "e.csv"
    code, _, err = run(capsys, "export", "-c", str(cfg), "--since", "10d", "--format", "csv", "--route", "plain",
                       "-o", str(target))
    assert code == 0 and "exported" in err
    rows = list(csv.DictReader(target.open()))
    assert {r["route"] for r in rows} == {"plain"}
    assert any(r["hop_idx"] == "1" for r in rows) and any(r["hop_idx"] == "" for r in rows)
    assert PASSWORD not in target.read_text()


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, raw pixel rows) of an 8-bit RGB/RGBA PNG: pure Python."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        f, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                row[i] = (row[i] + a) & 255
            elif f == 2:
                row[i] = (row[i] + b) & 255
            elif f == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += row
        prev = row
    return width, height, bpp, bytes(out)


def test_html_report_renders_in_headless_chromium(setup, capsys, tmp_path):
    import subprocess

    from conftest import need_chromium

    chromium = need_chromium()
    cfg, _, _, _ = setup
    page = tmp_path / "report.html"
    code, _, _ = run(capsys, "report", "-c", str(cfg), "--since", "5d", "--format", "html", "-o", str(page))
    assert code == 0
    shot = tmp_path / "shot.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1000,1600", page.as_uri()],
        capture_output=True, timeout=120, check=False, cwd=tmp_path,
    )
    assert shot.exists(), "Chromium wrote no screenshot"
    width, height, bpp, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 1600)
    colours: dict[bytes, int] = {}
    for i in range(0, len(pixels), bpp * 7):  # every 7th pixel is plenty
        px = pixels[i:i + 3]
        colours[px] = colours.get(px, 0) + 1
    background = max(colours.values())
    assert len(colours) > 20, "the screenshot is (nearly) one flat colour"
    assert background / sum(colours.values()) < 0.95, "the page is nearly all background"
    # the chart's bar colour (#4a7fd4) is on screen: the inline SVG was drawn
    assert any(abs(p[0] - 0x4A) < 12 and abs(p[1] - 0x7F) < 12 and abs(p[2] - 0xD4) < 12 for p in colours)


def test_csv_cells_that_a_spreadsheet_would_run_are_defused():
    from flowtui.report import csv_cell

    assert csv_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("mx.example") == "mx.example"
    assert csv_cell(-1.5) == -1.5 and csv_cell(None) == ""


def test_output_never_replaces_what_is_not_a_plain_writable_file(setup, capsys, tmp_path):
    """-o follows a symlink (the link stays), writes into a FIFO or device in place,
    refuses a read-only file, and keeps an existing file's mode."""
    import os
    import stat
    import threading

    cfg, _, _, _ = setup
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    assert run(capsys, "report", "-c", str(cfg), "--format", "json", "-o", str(link))[0] == 0
    assert link.is_symlink() and json.loads(real.read_text())["sections"]

    readonly = tmp_path / "ro.txt"
    readonly.write_text("keep me")
    readonly.chmod(0o444)
    code, _, err = run(capsys, "report", "-c", str(cfg), "-o", str(readonly))
    assert code == 2 and "read-only" in err and readonly.read_text() == "keep me"

    shared = tmp_path / "shared.txt"
    shared.write_text("x")
    shared.chmod(0o640)
    assert run(capsys, "export", "-c", str(cfg), "-o", str(shared))[0] == 0
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640 and shared.read_text().startswith("{")

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    assert run(capsys, "report", "-c", str(cfg), "-o", str(fifo))[0] == 0
    reader.join(10)
    assert stat.S_ISFIFO(fifo.stat().st_mode) and b"flowtui report" in got[0]


def test_a_closed_pipe_ends_quietly(setup):
    """`flowtui export ... | head -c 100`: no BrokenPipeError traceback."""
    import subprocess
    import sys

    cfg, _, _, _ = setup
    p = subprocess.Popen([sys.executable, "-m", "flowtui", "export", "-c", str(cfg)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.read(100)
    p.stdout.close()  # the reader is gone while the writer has far more to write
    _, err = p.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err
    assert p.returncode == 141


@pytest.mark.parametrize("cmd, fmt", [("report", "csv"), ("report", "html"), ("report", "table"), ("export", "csv")])
def test_no_raw_control_character_reaches_stdout(tmp_path, capsys, cmd, fmt):
    """A route name or a hop read from a Received header with ESC/BEL in it is shown as text."""
    route, host = "r\x1b[2Jx", "mx\x07.example\x1b]0;t\x07"
    with Store(tmp_path / "c.db") as store:
        now = time.time()
        store.write_result(ProbeResult(route=route, probe_id="p1", seq=1, state=ProbeState.DELIVERED,
                                       sent_at=now - 60, submit_s=0.1, transit_s=0.5, total_s=0.6,
                                       hops=(Hop(index=0, by_host="a.example"), Hop(index=1, by_host=host, delay_s=0.2))))
        store.flush_sync()
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps({"monitor": {"database": str(tmp_path / "c.db")}, "routes": [{
        "name": "plain", "from": "a@example.test", "to": "b@example.test",
        "smtp": {"host": "127.0.0.1", "security": "none"}, "imap": {"host": "127.0.0.1", "security": "none"}}]}))
    code, out, _ = run(capsys, cmd, "-c", str(cfg), "--format", fmt)
    assert code == 0 and "\\x1b" in out  # there, as text
    assert not any(ch in out for ch in "\x1b\x07"), repr(out[:300])
