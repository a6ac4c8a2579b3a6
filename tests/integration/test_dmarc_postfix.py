"""DMARC reports through the real Postfix + Dovecot lab: delivered by SMTP into a folder,
collected over IMAP without touching anything that is not an imported report."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from conftest import need_real_mail
from flowtui.core.config import load_config
from flowtui.core.dmarc.collect import DmarcCollector
from flowtui.core.storage import Store
from flowtui.lab import postfix
from integration.dmarclab import (
    create_folder,
    deliver,
    folder_snapshot,
    plain_mail,
    report_mail,
    report_xml,
    set_flags,
    wait_count,
    write_dmarc_config,
)

pytestmark = pytest.mark.realmail


@pytest.fixture(scope="module")
def lab():
    need_real_mail()
    d = Path(tempfile.mkdtemp(prefix="flowtui-dmarc-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield postfix.up(str(d), 2)
    finally:
        if (d / "lab.json").exists():
            postfix.down(str(d))
        shutil.rmtree(d, ignore_errors=True)


async def _fill(lab, folder: str, tag: str) -> dict[int, tuple[str, bytes]]:
    """A normal message (flagged, unseen), a report, a hostile 'report' and a second report."""
    await create_folder(lab, folder)
    await deliver(lab, plain_mail(f"lunch {tag}"), folder)
    snap = await wait_count(lab, folder, 1)
    await set_flags(lab, folder, max(snap), r"(\Flagged)")
    await deliver(lab, report_mail(report_xml(f"{tag}-1", [("192.0.2.10", 50, "pass", "pass")]), f"{tag}-1"), folder)
    xxe = b'<?xml version="1.0"?><!DOCTYPE feedback [<!ENTITY x SYSTEM "file:///etc/passwd">]><feedback>&x;</feedback>'
    await deliver(lab, report_mail(xxe, f"{tag}-bad", container="gz"), folder)
    await deliver(lab, report_mail(report_xml(f"{tag}-2", [("198.51.100.7", 5, "fail", "fail")]), f"{tag}-2", "gz"), folder)
    return await wait_count(lab, folder, 4)


def test_move_moves_only_the_reports_and_leaves_other_mail_as_it_was(lab, tmp_path):
    folder = "DMARCmove"
    cfg = write_dmarc_config(lab, "dmarc-move.toml", str(tmp_path / "m.db"), folder, on_import="move:DMARC/Done")

    async def body():
        before = await _fill(lab, folder, "mv")
        config = load_config(cfg)
        with Store(config.monitor.database) as store:
            collector = DmarcCollector(config.dmarc, store)
            first = await collector.collect_once()
            again = await collector.collect_once()
            stored = store.read(lambda c: c.execute("SELECT COUNT(*) FROM dmarc_reports").fetchone()[0])
        return before, first, again, stored, await folder_snapshot(lab, folder), await folder_snapshot(lab, "DMARC/Done")

    before, first, again, stored, after, done = asyncio.run(body())
    assert (first.imported, first.duplicates, len(first.errors)) == (2, 0, 1), first
    assert "DTD or entities" in first.errors[0]
    assert (again.imported, again.duplicates, again.errors) == (0, 0, [])  # remembered: not read again
    assert stored == 2
    kept = {uid: v for uid, v in before.items() if b"Report-ID: mv-" not in v[1] or b"mv-bad" in v[1]}
    assert after == kept  # the normal mail and the refused report: same UIDs, flags and bytes
    assert any(flags == "\\Flagged" for flags, _ in after.values())
    assert sorted(b"mv-1" in m or b"mv-2" in m for _, m in done.values()) == [True, True]


def test_remember_changes_nothing_in_the_folder(lab, tmp_path):
    folder = "DMARCkeep"
    cfg = write_dmarc_config(lab, "dmarc-keep.toml", str(tmp_path / "k.db"), folder)

    async def body():
        before = await _fill(lab, folder, "kp")
        config = load_config(cfg)
        with Store(config.monitor.database) as store:
            collector = DmarcCollector(config.dmarc, store)
            first = await collector.collect_once()
            again = await collector.collect_once()
            seen = store.read(lambda c: c.execute("SELECT COUNT(*) FROM dmarc_imap_seen").fetchone()[0])
        return before, first, again, seen, await folder_snapshot(lab, folder)

    before, first, again, seen, after = asyncio.run(body())
    assert first.imported == 2 and again.imported == 0 and again.duplicates == 0
    assert seen == 4  # every UID looked at is remembered (with the folder's UIDVALIDITY)
    assert after == before  # not a flag changed, not a message moved


def test_seen_marks_only_the_reports(lab, tmp_path, monkeypatch):
    from flowtui.core.dmarc import collect

    monkeypatch.setattr(collect, "BATCH", 1)  # a backlog handled one message per step
    folder = "DMARCseen"
    cfg = write_dmarc_config(lab, "dmarc-seen.toml", str(tmp_path / "s.db"), folder, on_import="seen")

    async def body():
        before = await _fill(lab, folder, "sn")
        config = load_config(cfg)
        with Store(config.monitor.database) as store:
            await DmarcCollector(config.dmarc, store).collect_once()
        return before, await folder_snapshot(lab, folder)

    before, after = asyncio.run(body())
    assert set(after) == set(before)
    for uid, (flags, msg) in after.items():
        is_report = b"Report-ID: sn-1" in msg or b"Report-ID: sn-2" in msg
        assert ("\\Seen" in flags) == is_report, (uid, flags)
        assert msg == before[uid][1]
        if not is_report:
            assert flags == before[uid][0]


def test_headless_monitor_collects_reports_and_fires_the_pass_rate_alert(lab, tmp_path):
    import signal
    import subprocess
    import sys
    import threading
    import time

    folder = "DMARChl"

    async def fill():
        await create_folder(lab, folder)
        await deliver(lab, report_mail(report_xml("hl-1", [("192.0.2.10", 100, "pass", "pass")]), "hl-1"), folder)
        await deliver(lab, report_mail(report_xml("hl-2", [("198.51.100.8", 60, "fail", "fail")]), "hl-2", "gz"), folder)
        await wait_count(lab, folder, 2)

    asyncio.run(fill())
    cfg = write_dmarc_config(lab, "dmarc-hl.toml", str(tmp_path / "hl.db"), folder, interval="1s",
                             alerts=[{"kind": "dmarc_pass_rate", "volume": 10}, {"kind": "lost"}])
    proc = subprocess.Popen([sys.executable, "-m", "flowtui", "run", "--headless", "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("ALERT FIRED WARN dmarc_pass_rate" in line for line in out):
            assert time.monotonic() < deadline, out
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(5)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    line = next(x for x in out if "dmarc_pass_rate" in x)
    assert "DMARC pass rate of example.com is 62% (100 of 160 messages) < 90%" in line, line
    assert "flowtui: dmarc: 2 reports imported, 0 duplicates, 0 errors" in err
    assert "Traceback" not in err


def test_on_the_wire_only_reports_are_stored_moved_or_expunged(lab, tmp_path):
    """Every command the collector sends, read off the wire through a logging proxy."""
    import re
    from dataclasses import replace

    from flowtui.core.model import Security
    from integration.test_watcher_safety import LoggingProxy

    folder = "DMARCwire"
    cfg = write_dmarc_config(lab, "dmarc-wire.toml", str(tmp_path / "w.db"), folder, on_import="move:WireDone")

    async def body():
        await _fill(lab, folder, "wr")
        from email.message import EmailMessage

        letter = EmailMessage()  # multipart with an attachment, but no report: its body stays unread
        letter["From"], letter["To"], letter["Subject"] = "a@example.test", "dmarc@example.test", "invoice wr"
        letter.set_content("see the attached invoice")
        letter.add_attachment(b"%PDF-1.4 not a report", maintype="application", subtype="pdf", filename="invoice.pdf")
        await deliver(lab, letter.as_bytes(), folder)
        before = await wait_count(lab, folder, 5)
        proxy = LoggingProxy(lab.imap_port)
        port = await proxy.start()
        config = load_config(cfg)
        settings = replace(config.dmarc, imap=replace(config.dmarc.imap, port=port, security=Security.NONE))
        try:
            with Store(config.monitor.database) as store:
                first = await DmarcCollector(settings, store).collect_once()
        finally:
            await proxy.close()
        return before, first, proxy.client_lines, await folder_snapshot(lab, folder)

    before, first, lines, after = asyncio.run(body())
    assert first.imported == 2
    reports = {uid for uid, (_, m) in before.items() if re.search(rb"Report-ID: wr-[12]\b", m)}
    plain = {uid for uid, (_, m) in before.items() if b"Subject: lunch wr" in m or b"Subject: invoice wr" in m}
    assert len(reports) == 2 and len(plain) == 2
    commands = [ln.decode(errors="replace").strip() for ln in lines]
    assert any(" EXAMINE " in c.upper() or " SELECT " in c.upper() for c in commands)
    changed: set[int] = set()
    for cmd in commands:
        upper = cmd.upper()
        assert not re.match(r"^\S+ (FETCH|STORE|EXPUNGE|MOVE|COPY)\b", upper), f"not by UID: {cmd}"
        assert not ("BODY[" in upper and "BODY.PEEK[" not in upper), f"a fetch that sets \\Seen: {cmd}"
        m = re.match(r"^\S+ UID (FETCH|STORE|EXPUNGE|MOVE|COPY) (\S+)", upper)
        if not m:
            continue
        uids = {int(u) for u in re.findall(r"\d+", m.group(2))}
        assert ":" not in m.group(2) and "*" not in m.group(2), cmd
        if m.group(1) != "FETCH":
            changed |= uids
        elif uids & plain:  # of ordinary mail: its size, Content-Type and structure, never its content
            assert "BODY.PEEK[HEADER.FIELDS (CONTENT-TYPE)]" in upper or "(UID BODYSTRUCTURE)" in upper, cmd
    assert changed == reports
    assert set(after) == set(before) - reports
    assert all(after[uid] == before[uid] for uid in after)
