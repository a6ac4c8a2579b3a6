"""Probe tokens and probe messages.

A token names the route, the probe's sequence number, a random probe id, the
send time and the content hash, sealed with an HMAC-SHA256 over all of them
with a per-installation secret. Only a message whose token verifies is a probe.

    1.<route, base64url>.<seq>.<probe id>.<sent ms>.<content sha256, 16 hex>.<mac, 32 hex>

It travels in the ``X-Flowtui-Probe`` header and, with dots, in the Message-ID.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import format_datetime
from datetime import datetime, timezone
from pathlib import Path

from flowtui.core.errors import UserError

HEADER = "X-Flowtui-Probe"
CONTENT_HEADER = "X-Flowtui-Content"
VERSION = "1"
MSGID_DOMAIN = "probe.flowtui.invalid"
# long lines allowed (RFC 5322: 998), so the token header is never folded or encoded
_POLICY = email.policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True, slots=True)
class Token:
    route: str
    seq: int
    probe_id: str
    sent_ms: int
    content: str  # 16 hex chars of the content hash
    text: str = ""  # the token as written

    @property
    def sent_at(self) -> float:
        return self.sent_ms / 1000.0


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """The installation's HMAC key: read it, or create it (mode 0600) on first use."""
    p = Path(path)
    try:
        key = p.read_bytes().strip()
        if len(key) < 32:
            raise UserError(f"{p}: the probe secret is too short; delete the file to make a new one")
        if p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)
        return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UserError(f"{p}: cannot read the probe secret ({exc.strerror})")
    key = secrets.token_hex(32).encode()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return load_secret(p)
    except OSError as exc:
        raise UserError(f"{p}: cannot create the probe secret ({exc.strerror})")
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]


def make_token(key: bytes, route: str, seq: int, sent_ms: int, content: str, probe_id: str | None = None) -> str:
    probe_id = probe_id or secrets.token_hex(8)
    body = ".".join([VERSION, _b64(route), str(seq), probe_id, str(sent_ms), content])
    return f"{body}.{_mac(key, body)}"


def expected_message_id(token: Token) -> str:
    """The Message-ID a probe with this token was sent with."""
    return f"<flowtui.{token.text}@{MSGID_DOMAIN}>"


def verify_token(key: bytes, text: str | None) -> Token | None:
    """The token, if ``text`` is one this installation made; else None. Never raises."""
    if not text or len(text) > 512:
        return None
    parts = text.strip().split(".")
    if len(parts) != 7 or parts[0] != VERSION:
        return None
    body, mac = ".".join(parts[:6]), parts[6]
    if not hmac.compare_digest(_mac(key, body), mac):
        return None
    try:
        return Token(_unb64(parts[1]), int(parts[2]), parts[3], int(parts[4]), parts[5], text.strip())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def content_hash(body: str, attachment: bytes) -> str:
    h = hashlib.sha256()
    h.update(body.replace("\r\n", "\n").rstrip("\n").encode())
    h.update(b"\0")
    h.update(attachment)
    return h.hexdigest()[:16]


def _attachment(size: int, seed: str) -> bytes:
    """Deterministic filler of ``size`` bytes (so a copy can be checked)."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:size])


@dataclass(frozen=True, slots=True)
class ProbeMessage:
    token: str
    probe_id: str
    message_id: str
    data: bytes


def build_message(
    key: bytes,
    route: str,
    seq: int,
    mail_from: str,
    rcpt_to: str,
    subject: str,
    body: str,
    attachment_bytes: int = 0,
    now: datetime | None = None,
) -> ProbeMessage:
    now = now or datetime.now(timezone.utc)
    sent_ms = int(now.timestamp() * 1000)
    probe_id = secrets.token_hex(8)
    attachment = _attachment(attachment_bytes, probe_id) if attachment_bytes else b""
    text = body.rstrip("\n") + "\n"
    digest = content_hash(text, attachment)
    token = make_token(key, route, seq, sent_ms, digest, probe_id)
    msgid = f"<flowtui.{token}@{MSGID_DOMAIN}>"  # expected_message_id()
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = mail_from
    msg["To"] = rcpt_to
    msg["Subject"] = f"{subject} #{seq}"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = msgid
    msg[HEADER] = token
    msg[CONTENT_HEADER] = f"sha256={digest}"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    if attachment:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="probe.bin")
    return ProbeMessage(token, probe_id, msgid, msg.as_bytes())


def check_content(msg: Message, token: Token) -> bool:
    """True when the delivered copy carries the body and attachment that were sent."""
    text, attachment = "", b""
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() == "probe.bin":
            attachment = payload
        elif part.get_content_type() == "text/plain" and not text:
            charset = part.get_content_charset() or "utf-8"
            text = payload.decode(charset, errors="replace")
    return hmac.compare_digest(content_hash(text, attachment), token.content)
