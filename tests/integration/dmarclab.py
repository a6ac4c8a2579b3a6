"""Helpers for DMARC tests against the lab: report XML, report mails, delivery into a folder."""

from __future__ import annotations

import asyncio
import gzip
import io
import re
import time
import tomllib
import zipfile
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import tomli_w

from flowtui.lab.common import MAIL_DOMAIN, SENDER_USER, LabState
from mail import imap_login, tls_context


def report_xml(report_id: str, records: list[tuple[str, int, str, str]], *, org: str = "google.com",
               domain: str = "example.com", now: float | None = None) -> bytes:
    """A Google-shaped aggregate report; records are (source ip, count, dkim, spf)."""
    now = time.time() if now is None else now
    begin, end = int(now) - 86400, int(now) - 1
    rows = "".join(f"""
  <record>
    <row><source_ip>{ip}</source_ip><count>{count}</count>
      <policy_evaluated><disposition>none</disposition><dkim>{dkim}</dkim><spf>{spf}</spf></policy_evaluated></row>
    <identifiers><header_from>{domain}</header_from></identifiers>
    <auth_results><dkim><domain>{domain}</domain><result>{dkim}</result><selector>s1</selector></dkim>
      <spf><domain>{domain}</domain><result>{spf}</result></spf></auth_results>
  </record>""" for ip, count, dkim, spf in records)
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata><org_name>{org}</org_name><email>noreply-dmarc-support@google.com</email>
    <report_id>{report_id}</report_id><date_range><begin>{begin}</begin><end>{end}</end></date_range></report_metadata>
  <policy_published><domain>{domain}</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><sp>none</sp><pct>100</pct></policy_published>{rows}
</feedback>
""".encode()


def report_mail(xml: bytes, report_id: str, container: str = "zip") -> bytes:
    m = EmailMessage()
    m["From"] = SENDER_USER
    m["To"] = f"dmarc@{MAIL_DOMAIN}"
    m["Subject"] = f"Report domain: example.com Submitter: google.com Report-ID: {report_id}"
    m.set_content("DMARC aggregate report attached.")
    name = f"google.com!example.com!{report_id}"
    if container == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(name + ".xml", xml)
        m.add_attachment(buf.getvalue(), maintype="application", subtype="zip", filename=name + ".zip")
    else:
        m.add_attachment(gzip.compress(xml), maintype="application", subtype="octet-stream", filename=name + ".xml.gz")
    return bytes(m)


def plain_mail(subject: str) -> bytes:
    m = EmailMessage()
    m["From"] = SENDER_USER
    m["To"] = f"someone@{MAIL_DOMAIN}"
    m["Subject"] = subject
    m.set_content("An ordinary message that happens to sit in the reports folder.")
    return bytes(m)


async def create_folder(state: LabState, folder: str) -> None:
    imap = await imap_login(state)
    try:
        await imap.create(folder)
    finally:
        await imap.logout()


async def deliver(state: LabState, data: bytes, folder: str) -> None:
    """Submit through the whole Postfix chain to probe+FOLDER@ (Dovecot puts it in FOLDER)."""
    await aiosmtplib.send(
        data, sender=SENDER_USER, recipients=[f"probe+{folder}@{MAIL_DOMAIN}"],
        hostname="127.0.0.1", port=state.smtp_ports[0], start_tls=True, tls_context=tls_context(state),
        username=SENDER_USER, password=state.passwords[SENDER_USER], timeout=15,
    )


async def folder_snapshot(state: LabState, folder: str) -> dict[int, tuple[str, bytes]]:
    """UID -> (flags without \\Recent, whole message), read with EXAMINE and BODY.PEEK."""
    imap = await imap_login(state)
    try:
        from flowtui.core.probes.imap import examine

        r = await examine(imap, folder)
        assert r.result == "OK", r
        r = await imap.uid("fetch", "1:*", "(UID FLAGS BODY.PEEK[])")
        out = {}
        for i, line in enumerate(r.lines):
            if isinstance(line, bytearray):
                head = bytes(r.lines[i - 1]) + (bytes(r.lines[i + 1]) if i + 1 < len(r.lines) and isinstance(r.lines[i + 1], bytes) else b"")
                uid = int(re.search(rb"UID (\d+)", head).group(1))
                flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split()
                out[uid] = (" ".join(sorted(f for f in flags if f.lower() != "\\recent")), bytes(line))
        return out
    finally:
        await imap.logout()


async def wait_count(state: LabState, folder: str, n: int, timeout: float = 30) -> dict[int, tuple[str, bytes]]:
    deadline = time.monotonic() + timeout
    while True:
        snap = await folder_snapshot(state, folder)
        if len(snap) >= n:
            return snap
        if time.monotonic() > deadline:
            raise AssertionError(f"{folder} holds {len(snap)} messages, not {n}, after {timeout}s")
        await asyncio.sleep(0.3)


async def set_flags(state: LabState, folder: str, uid: int, flags: str) -> None:
    imap = await imap_login(state)
    try:
        await imap.select(folder)
        r = await imap.uid("store", str(uid), "+FLAGS", flags)
        assert r.result == "OK", r
    finally:
        await imap.logout()


def write_dmarc_config(state: LabState, name: str, db: str, folder: str, on_import: str = "remember",
                       interval: str = "1s", alerts: list[dict] | None = None) -> Path:
    doc = tomllib.loads((Path(state.dir) / "lab.toml").read_text())
    doc["monitor"]["database"] = db
    imap = dict(doc["routes"][0]["imap"])
    imap.pop("folders", None)
    imap.pop("junk_folders", None)
    doc["dmarc"] = {"folder": folder, "interval": interval, "on_import": on_import, "imap": imap}
    if alerts is not None:
        doc["alerts"] = alerts
    path = Path(state.dir) / name
    path.write_text(tomli_w.dumps(doc))
    path.chmod(0o600)
    return path
