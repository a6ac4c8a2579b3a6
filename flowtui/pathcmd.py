"""``flowtui path FILE.eml [--json]``: the parsed path of any message.

Reads a message (``-`` for standard input), prints a hop table or the JSON of
DESIGN.md "Paths".  Header text is untrusted: everything shown in the table
goes through :func:`flowtui.core.headers.safe_text`.
"""

from __future__ import annotations

import argparse
import email
import email.message
import email.policy
import json
import re
import sys
from pathlib import Path
from typing import TextIO

from flowtui.core.errors import UserError
from flowtui.core.headers import parse_authentication_results, parse_received_chain, safe_text

_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "path",
        help="show the hops, delays and TLS of a message's Received chain",
        description="Parse the Received headers of FILE (an .eml message, or - for "
        "standard input): one row per hop, origin first.",
    )
    p.add_argument("file", metavar="FILE", help="message file, or - for standard input")
    p.add_argument("--json", action="store_true", help="print JSON: {hops: [{index, from_host, from_rdns, from_ip, by_host, with, id, for, via, envelope_from, tls, timestamp, delay_s}], total_s, warnings}")
    p.add_argument(
        "--trusted-authserv-id",
        action="append",
        metavar="ID",
        help="only trust Authentication-Results from this authserv-id (repeatable)",
    )


def read_message(name: str, stdin: TextIO | None = None) -> email.message.Message:
    """Read FILE or '-' as a message; UserError (one line) when it is not one."""
    label = "standard input" if name == "-" else name
    try:
        if name == "-":
            stream = stdin if stdin is not None else sys.stdin
            buf = getattr(stream, "buffer", None)
            data = buf.read() if buf is not None else stream.read().encode("utf-8", "surrogateescape")
        else:
            data = Path(name).read_bytes()
    except FileNotFoundError:
        raise UserError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{label}: is a directory, not a message file") from None
    except OSError as exc:
        raise UserError(f"{label}: cannot read ({exc.strerror or exc})") from None
    reason = _not_a_message(data)
    if reason:
        raise UserError(f"{label}: not an email message ({reason})")
    return email.message_from_bytes(data, policy=email.policy.compat32)


def _not_a_message(data: bytes) -> str | None:
    if not data.strip():
        return "empty"
    head = data[:65536]
    if b"\x00" in head:
        return "binary data"
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 13))
    if controls > max(8, len(head) // 20):
        return "binary data"
    first = data.lstrip(b"\r\n").split(b"\n", 1)[0]
    if first.startswith(b"From ") and b"\n" in data:  # mbox separator line
        first = data.lstrip(b"\r\n").split(b"\n", 2)[1]
    if not _HEADER_LINE.match(first):
        return "no header fields"
    return None


_COLUMNS = ("#", "from", "rdns", "ip", "by", "with", "tls", "time (UTC)", "delay")


def _cell(value: object, width: int = 40) -> str:
    text = safe_text(value) if value is not None else "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(msg: email.message.Message, trusted: list[str] | None = None) -> str:
    """The readable hop table (plain text, header text escaped)."""
    path = parse_received_chain(msg)
    rows = []
    for h in path.hops:
        tls = {True: "yes", False: "NO", None: "?"}[h.tls]
        ts = h.timestamp.strftime("%Y-%m-%d %H:%M:%S") if h.timestamp else None
        delay = None if h.delay_s is None else f"{h.delay_s:+g}s"
        rows.append(
            [str(h.index), _cell(h.from_host), _cell(h.from_rdns), _cell(h.from_ip),
             _cell(h.by_host), _cell(h.with_protocol, 24), tls, _cell(ts), _cell(delay)]
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(_COLUMNS, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    if not rows:
        lines.append("(no Received headers)")
    total = "-" if path.total_s is None else f"{path.total_s:g}s"
    lines.append(f"total: {total}")
    auth = parse_authentication_results(msg, trusted_authserv_ids=trusted)
    if auth.authserv_id is not None:
        parts = []
        for r in (auth.spf, auth.dkim, auth.dmarc):
            if r is not None:
                parts.append(f"{r.method}={r.result}" + (f" ({r.reason})" if r.reason else ""))
        lines.append(f"auth ({_cell(auth.authserv_id)}): {_cell(', '.join(parts) or 'none', 200)}")
    for w in path.warnings:
        lines.append(f"warning: {_cell(w, 200)}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    msg = read_message(args.file)
    if args.json:
        print(json.dumps(parse_received_chain(msg).to_json_dict(), indent=2, ensure_ascii=True))
    else:
        print(render_table(msg, args.trusted_authserv_id))
    return 0
