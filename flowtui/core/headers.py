"""Pure parsing of trace and report headers: Received chains, TLS per hop,
Authentication-Results (RFC 8601) and bounces (RFC 3464 DSNs and the common
non-standard bodies).

Nothing here raises on bad input: what cannot be read becomes None plus a
warning.  No Textual, no Rich.
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from flowtui.core.dates import parse_date
from flowtui.core.model import AuthResults, Bounce, Hop, MethodResult, PathResult

__all__ = [
    "parse_date",
    "parse_received",
    "parse_received_chain",
    "parse_authentication_results",
    "parse_bounce",
    "safe_text",
]

# --------------------------------------------------------------------------
# tokens


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "word" | "comment" | "angle" | "literal" | "semi"
    text: str  # for comments/angles/literals: the inside, without delimiters


def _tokenize(text: str) -> list[_Tok]:
    """Split unfolded header text into words, (comments), <angles>, [literals], ';'.

    Comments nest; an unclosed comment runs to the end.  Quoted strings stay
    inside words.
    """
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "(":
            depth, j = 1, i + 1
            while j < n and depth:
                if text[j] == "\\":
                    j += 1
                elif text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                j += 1
            inner = text[i + 1 : j - 1] if depth == 0 else text[i + 1 :]
            toks.append(_Tok("comment", inner))
            i = j
        elif c == "<":
            j = text.find(">", i + 1)
            if j < 0:
                j = n
            toks.append(_Tok("angle", text[i + 1 : j].strip()))
            i = j + 1
        elif c == "[":
            j = text.find("]", i + 1)
            if j < 0:
                j = n
            toks.append(_Tok("literal", text[i + 1 : j]))
            i = j + 1
        elif c == ";":
            toks.append(_Tok("semi", ";"))
            i += 1
        elif c in ")>]":
            i += 1  # stray closer: skip
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "()<>[];":
                if text[j] == '"':
                    k = text.find('"', j + 1)
                    j = n if k < 0 else k + 1
                else:
                    j += 1
            toks.append(_Tok("word", text[i:j]))
            i = j
    return toks


def _unfold(value: str) -> str:
    return " ".join(str(value).split())


# --------------------------------------------------------------------------
# addresses

def _clean_ip(text: str) -> str | None:
    """An IPv4/IPv6 address from ``[IPv6:…]``, ``1.2.3.4:port``, ``fe80::1%11`` …"""
    t = text.strip().strip("[]").strip()
    if t[:5].lower() == "ipv6:":
        t = t[5:]
    t = t.strip("[]")
    if "%" in t:
        t = t.split("%", 1)[0]
    for cand in (t, _strip_port(t)):
        if not cand:
            continue
        try:
            ipaddress.ip_address(cand)
        except ValueError:
            continue
        return cand
    return None


def _strip_port(t: str) -> str:
    # "1.2.3.4:46248" or "[1.2.3.4]:46248" (brackets already gone)
    m = re.fullmatch(r"(\d{1,3}(?:\.\d{1,3}){3})[:.](\d{1,5})", t)
    if m:
        return m.group(1)
    m = re.fullmatch(r"\[?([0-9A-Fa-f:.]+)\]?:(\d{1,5})", t)
    return m.group(1) if m and ":" not in t.split("]")[0].rstrip(":0123456789") else ""


_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_\-]+)*\.?")


# --------------------------------------------------------------------------
# TLS

_TLS_PROTOCOLS = {
    "esmtps", "esmtpsa", "utf8smtps", "utf8smtpsa", "lmtps", "lmtpsa", "utf8lmtps",
    "utf8lmtpsa", "smtps",
}
_PLAIN_PROTOCOLS = {
    "smtp", "esmtp", "esmtpa", "lmtp", "utf8smtp", "utf8smtpa", "utf8lmtp", "utf8lmtpa",
    "microsoft smtp server", "microsoft smtpsvc",
}
_TLS_MARKERS = re.compile(
    r"""
    \busing\s+(?:TLS|SSL)v?\d          # Postfix: (using TLSv1.3 with cipher ...)
    | \bversion=(?:TLS|SSL)            # Exchange/Gmail: (version=TLS1_2, cipher=...)
    | \(\s*TLS\s*\)                    # Exchange: with Microsoft SMTP Server (TLS)
    | \bTLS\s*v?1[._]?\d?\s*[:)]       # Exim: (TLS1.2:ECDHE_...) / (TLS1.2)
    | \btls\s+TLS_                     # Exim 4.94+: (TLS1.2) tls TLS_ECDHE_...
    | \bover\s+TLS\b                   # Hotmail: over TLS secured channel
    | /TLS\b                           # IronPort: ESMTP/TLS/AES128-SHA
    | \bcipher=                        # cipher=...
    | \bwith\s+cipher\b
    | \bTLS\s+(?:connection|encrypted)\b
    | \bSSL\s+v?3
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _detect_tls(raw: str, protocol: str | None) -> bool | None:
    if _TLS_MARKERS.search(raw):
        return True
    proto = " ".join((protocol or "").lower().split())
    words = [w.split("/")[0] for w in proto.split()]
    if any(w in _TLS_PROTOCOLS for w in words):
        return True
    if proto in _PLAIN_PROTOCOLS or any(w in _PLAIN_PROTOCOLS for w in words):
        return False
    return None


# --------------------------------------------------------------------------
# one Received header

_KEYWORDS = ("from", "by", "via", "with", "id", "for")
_SKIP_IN_COMMENT = re.compile(
    r"""
    \b(?:helo|ehlo|lhlo)\s*[=\s]\s*(?:\[[^\]]*\]|\S+)
    | \baccount\s+<?[^\s>]+>?
    | \bauthenticated\s+(?:user|sender)\s*:?\s*\S*(?:\s+\S+@\S+)?
    | \bport[=\s]\s*\d+
    | \benvelope-(?:from|sender)\s*<?[^\s>]*>?
    | \bmay\s+be\s+forged
    | \bidentity=\S+
    """,
    re.IGNORECASE | re.VERBOSE,
)


@dataclass
class _Fields:
    from_host: str | None = None
    from_rdns: str | None = None
    from_ip: str | None = None
    by_host: str | None = None
    with_protocol: str | None = None
    id: str | None = None
    for_addr: str | None = None
    via: str | None = None
    envelope_from: str | None = None


def _split_date(toks: list[_Tok]) -> tuple[list[_Tok], list[_Tok]]:
    """Clause tokens and date tokens: the date follows the last top-level ';'."""
    last = max((i for i, t in enumerate(toks) if t.kind == "semi"), default=-1)
    if last < 0:
        return toks, []
    return toks[:last], toks[last + 1 :]


def _render(toks: Iterable[_Tok]) -> str:
    return " ".join(_tok_text(t) for t in toks)


def _tok_text(t: _Tok) -> str:
    """A token written back as it stood: (comment), <angle>, [literal] or the word."""
    if t.kind == "comment":
        return f"({t.text})"
    if t.kind == "angle":
        return f"<{t.text}>"
    if t.kind == "literal":
        return f"[{t.text}]"
    return t.text


def _clauses(toks: list[_Tok]) -> dict[str, list[_Tok]]:
    """Tokens after each keyword, up to the next keyword; each keyword once.

    A keyword seen again (``for <a> from <b>``) is read as part of the clause
    it sits in.  Tokens before the first keyword go under "".
    """
    out: dict[str, list[_Tok]] = {"": []}
    current = ""
    for t in toks:
        if t.kind == "word" and t.text.lower() in _KEYWORDS and t.text.lower() not in out:
            current = t.text.lower()
            out[current] = []
        elif t.kind == "word" and t.text.lower() == "envelope-from" and "envelope-from" not in out:
            current = "envelope-from"
            out[current] = []
        else:
            out[current].append(t)
    return out


def _read_from_comment(text: str) -> tuple[str | None, str | None]:
    """(rdns, ip) from a TCP-info comment such as ``mail.example.com [192.0.2.1]``."""
    inner = text
    for _ in range(3):
        inner = re.sub(r"\([^()]*\)", " ", inner)
    inner = _SKIP_IN_COMMENT.sub(" ", inner)
    rdns: str | None = None
    ip: str | None = None
    for tok in _tokenize(inner):
        if tok.kind == "literal":
            cand = _clean_ip(tok.text)
            if cand and ip is None:
                ip = cand
            continue
        if tok.kind != "word":
            continue
        word = tok.text.strip(",;")
        cand = _clean_ip(word)
        if cand:
            if ip is None:
                ip = cand
            continue
        if rdns is None and ip is None and _HOSTNAME.fullmatch(word) and any(
            ch.isalpha() for ch in word
        ):
            rdns = word
    if rdns is not None and rdns.lower() == "unknown":
        rdns = None
    return rdns, ip


def _first_value(toks: list[_Tok]) -> str | None:
    for t in toks:
        if t.kind == "comment":
            continue
        if t.kind == "literal":
            return f"[{t.text}]"
        if t.kind in ("word", "angle"):
            value = t.text.strip().rstrip(",")
            return value or None
        return None
    return None


def _words_until_comment(toks: list[_Tok]) -> str | None:
    words: list[str] = []
    for t in toks:
        if t.kind != "word":
            break
        words.append(t.text)
    return " ".join(words) or None


MAX_COMMENT_DEPTH = 8  # real headers nest comments two or three deep


def _envelope_from(toks: list[_Tok], depth: int = 0) -> str | None:
    for t in toks:
        if t.kind == "comment":
            m = re.match(r"\s*envelope-(?:from|sender)\s*:?\s*<?([^\s<>]*)>?", t.text, re.I)
            if m:
                return m.group(1)
            deeper = "(" in t.text and depth < MAX_COMMENT_DEPTH
            nested = _envelope_from(_tokenize(t.text), depth + 1) if deeper else None
            if nested is not None:
                return nested
    return None


def _read_fields(clause_toks: list[_Tok], date_toks: list[_Tok]) -> _Fields:
    f = _Fields()
    cl = _clauses(clause_toks)
    if "from" in cl:
        ftoks = cl["from"]
        first = ftoks[0] if ftoks else None
        rest = ftoks
        if first is not None and first.kind in ("word", "literal"):
            f.from_host = f"[{first.text}]" if first.kind == "literal" else first.text
            rest = ftoks[1:]
        helo_style = False
        for t in rest:
            if t.kind == "word" and re.match(r"(?:helo|ehlo)=", t.text, re.I):
                helo_style = True  # comments already stripped by some relay
            if t.kind == "comment":
                if re.search(r"\b(?:helo|ehlo)\b", t.text, re.I):
                    helo_style = True
                rdns, ip = _read_from_comment(t.text)
                if f.from_rdns is None and rdns is not None and f.from_ip is None:
                    f.from_rdns = rdns
                if f.from_ip is None and ip is not None:
                    f.from_ip = ip
            elif t.kind == "literal" and f.from_ip is None:
                # "from UnknownHost [192.0.2.1] by …": the MTA's own annotation
                f.from_ip = _clean_ip(t.text)
        if f.from_ip is None and f.from_host and helo_style:
            # Exim "from [192.0.2.1] (helo=…)", CommuniGate "from [192.0.2.1]
            # (account … HELO …)": the name slot holds the peer's address
            f.from_ip = _clean_ip(f.from_host)
    if "by" in cl:
        f.by_host = _first_value(cl["by"])
    if "with" in cl:
        f.with_protocol = _words_until_comment(cl["with"])
    if "id" in cl:
        f.id = _first_value(cl["id"])
    if "for" in cl:
        f.for_addr = _first_value(cl["for"])
    if "via" in cl:
        f.via = _words_until_comment(cl["via"])
    if "envelope-from" in cl:
        f.envelope_from = _first_value(cl["envelope-from"])
    if f.envelope_from is None:
        f.envelope_from = _envelope_from(clause_toks + date_toks)
    return f


_LOOSE_DATE = re.compile(
    r"(?:[A-Za-z]{3},?\s+)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}"
    r"|\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}"
)


def parse_received(value: str) -> tuple[Hop, list[str]]:
    """Parse one Received header value into a Hop (index 0, no delay) and warnings."""
    try:
        return _parse_received(value)
    except Exception as exc:  # pragma: no cover - a last guard; keep the chain going
        return Hop(index=0, raw=_unfold(value) if isinstance(value, str) else ""), [
            f"unreadable Received header ({type(exc).__name__})"
        ]


MAX_RECEIVED_CHARS = 8192  # real Received headers are a few hundred characters


def _parse_received(value: str) -> tuple[Hop, list[str]]:
    raw = _unfold(value)
    warnings: list[str] = []
    if len(raw) > MAX_RECEIVED_CHARS:  # hostile or broken: parse the start, say so
        warnings.append(f"Received header of {len(raw)} characters cut to {MAX_RECEIVED_CHARS}")
        raw = raw[:MAX_RECEIVED_CHARS]
    toks = _tokenize(raw)
    clause_toks, date_toks = _split_date(toks)
    ts = None
    if date_toks:
        ts, w = parse_date(_render(date_toks))
        if ts is None:
            # the date may sit before the last ';' ("…; date; junk")
            m = _LOOSE_DATE.search(raw)
            if m:
                ts, w2 = parse_date(raw[m.start() :])
                w = w2 if ts is not None else w
        if w:
            warnings.append(w)
    else:
        m = _LOOSE_DATE.search(raw)
        if m:
            ts, w = parse_date(raw[m.start() :])
            # keep the date's text out of the clauses
            clause_toks = _tokenize(raw[: m.start()])
            if w:
                warnings.append(w)
        else:
            warnings.append("no date")
    f = _read_fields(clause_toks, date_toks)
    if not any((f.from_host, f.from_ip, f.by_host, f.with_protocol, f.id)) and ts is None:
        warnings.append(f"unreadable Received header {_clip(raw)!r}")
    hop = Hop(
        index=0,
        from_host=f.from_host,
        from_rdns=f.from_rdns,
        from_ip=f.from_ip,
        by_host=f.by_host,
        with_protocol=f.with_protocol,
        id=f.id,
        for_addr=f.for_addr,
        via=f.via,
        envelope_from=f.envelope_from,
        tls=_detect_tls(_render(clause_toks), f.with_protocol),
        timestamp=ts,
        raw=raw,
    )
    return hop, warnings


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------
# the chain


def _received_values(headers: Sequence[str] | email.message.Message) -> list[str]:
    if isinstance(headers, email.message.Message):
        out = []
        for name, value in headers.raw_items() if hasattr(headers, "raw_items") else headers.items():
            if name.strip().lower() == "received":
                out.append(str(value))
        return out
    if isinstance(headers, str):
        headers = [headers]
    values = []
    for h in headers:
        if not isinstance(h, str):
            h = str(h)
        m = re.match(r"\s*received\s*:", h, re.IGNORECASE)
        values.append(h[m.end() :] if m else h)
    return values


def parse_received_chain(headers: Sequence[str] | email.message.Message) -> PathResult:
    """Parse the Received headers of a message into hops, origin first.

    ``headers`` is a message, or the Received values in message order (top-most
    first; a leading ``Received:`` is allowed).  Delay of hop i is its time
    minus hop i-1's; a negative delay is kept and warned about as clock skew.
    Never raises.
    """
    try:
        values = _received_values(headers)
    except Exception as exc:  # pragma: no cover
        return PathResult(warnings=(f"unreadable headers ({type(exc).__name__})",))
    values.reverse()  # origin (bottom-most) first
    hops: list[Hop] = []
    warnings: list[str] = []
    prev_ts = None
    prev_index = None
    for index, value in enumerate(values):
        hop, hop_warnings = parse_received(value)
        warnings.extend(f"hop {index}: {w}" for w in hop_warnings)
        delay = None
        if hop.timestamp is not None and prev_ts is not None and prev_index == index - 1:
            delay = round((hop.timestamp - prev_ts).total_seconds(), 3)
            if delay < 0:
                warnings.append(
                    f"hop {index}: clock skew: {delay:g} s earlier than hop {index - 1}"
                )
        hops.append(_with(hop, index=index, delay_s=delay))
        if hop.timestamp is not None:
            prev_ts, prev_index = hop.timestamp, index
        else:
            prev_ts, prev_index = None, None
    stamps = [h.timestamp for h in hops if h.timestamp is not None]
    total = round((stamps[-1] - stamps[0]).total_seconds(), 3) if len(stamps) >= 2 else None
    return PathResult(hops=tuple(hops), total_s=total, warnings=tuple(warnings))


def _with(hop: Hop, **changes: object) -> Hop:
    from dataclasses import replace

    return replace(hop, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Authentication-Results (RFC 8601)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside comments and quoted strings."""
    parts, buf, depth, quoted, i = [], [], 0, False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        if quoted:
            quoted = c != '"'
        elif c == '"':
            quoted = True
        elif c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif c == sep and depth == 0:
            parts.append("".join(buf))
            buf = []
            i += 1
            continue
        buf.append(c)
        i += 1
    parts.append("".join(buf))
    return parts


def _strip_comments(text: str) -> tuple[str, list[str]]:
    comments: list[str] = []
    out: list[str] = []
    for t in _tokenize(text):
        if t.kind == "comment":
            comments.append(" ".join(t.text.split()))
        else:
            out.append(_tok_text(t))
    return " ".join(out), comments


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


_RESINFO = re.compile(r"([A-Za-z0-9][\w.\-]*)(?:/\d+)?\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^\s\"]+)")


def _parse_ar_value(value: str) -> tuple[str | None, list[MethodResult]]:
    parts = _split_top(_unfold(value), ";")
    head, _ = _strip_comments(parts[0])
    authserv = head.split()[0] if head.split() else None
    results: list[MethodResult] = []
    for part in parts[1:]:
        text, comments = _strip_comments(part)
        pairs = _RESINFO.findall(text)
        if not pairs:
            continue  # "none" or junk
        method, result = pairs[0][0].lower(), _unquote(pairs[0][1]).lower()
        if "." in method:
            continue  # a property without a method: malformed, skip
        reason = None
        props: list[tuple[str, str]] = []
        for key, val in pairs[1:]:
            if key.lower() == "reason":
                reason = _unquote(val)
            elif "." in key:
                props.append((key.lower(), _unquote(val)))
            else:
                props.append((key.lower(), _unquote(val)))  # e.g. action=, policy.*
        results.append(
            MethodResult(
                method=method,
                result=result,
                reason=reason,
                comment="; ".join(comments) or None,
                properties=tuple(props),
            )
        )
    return authserv, results


def parse_authentication_results(
    msg_or_header_values: email.message.Message | Sequence[str] | str,
    trusted_authserv_ids: Iterable[str] | None = None,
) -> AuthResults:
    """SPF, DKIM and DMARC results of the top-most trusted Authentication-Results.

    ``msg_or_header_values`` is a message, a list of header values (top-most
    first), or one value.  With ``trusted_authserv_ids`` only headers from
    those authserv-ids count (case-insensitive); without, the top-most header
    is used.  Never raises.
    """
    try:
        values = _header_values(msg_or_header_values, "authentication-results")
    except Exception as exc:  # pragma: no cover
        return AuthResults(warnings=(f"unreadable headers ({type(exc).__name__})",))
    trusted = {t.lower() for t in trusted_authserv_ids} if trusted_authserv_ids else None
    if not values:
        return AuthResults(warnings=("no Authentication-Results header",))
    for value in values:
        try:
            authserv, results = _parse_ar_value(value)
        except Exception:  # pragma: no cover
            continue
        if trusted is not None and (authserv or "").lower() not in trusted:
            continue
        return AuthResults(
            authserv_id=authserv,
            spf=_pick(results, "spf"),
            dkim=_pick(results, "dkim"),
            dmarc=_pick(results, "dmarc"),
            results=tuple(results),
        )
    return AuthResults(warnings=("no Authentication-Results header from a trusted authserv-id",))


def _pick(results: list[MethodResult], method: str) -> MethodResult | None:
    mine = [r for r in results if r.method == method]
    for r in mine:
        if r.result == "pass":
            return r
    return mine[0] if mine else None


def _header_values(
    source: email.message.Message | Sequence[str] | str, name: str
) -> list[str]:
    if isinstance(source, email.message.Message):
        return [str(v) for k, v in source.items() if k.strip().lower() == name]
    if isinstance(source, str):
        source = [source]
    out = []
    for v in source:
        v = str(v)
        m = re.match(rf"\s*{re.escape(name)}\s*:", v, re.IGNORECASE)
        out.append(v[m.end() :] if m else v)
    return out


# --------------------------------------------------------------------------
# bounces

_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_MSGID = re.compile(r"^\s*Message-ID\s*:\s*(<[^>\s]+>|\S+)", re.IGNORECASE | re.MULTILINE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|failure notice|delivery status notification|"
    r"mail delivery (?:failed|failure|system)|delivery failure|non.?delivery|"
    r"could not be delivered|returned to sender",
    re.IGNORECASE,
)
_BOUNCE_FROM = re.compile(r"mailer-daemon|postmaster|mail delivery (?:sub)?system", re.IGNORECASE)


def parse_bounce(msg: email.message.Message) -> Bounce | None:
    """Read a bounce: an RFC 3464 DSN, or a qmail / Exchange / Postfix / text one.

    Returns None for a message that is not a bounce.  The original Message-ID
    comes from the returned headers (text/rfc822-headers or message/rfc822
    part, or the quoted body) so a bounce can be tied to its probe.  Never
    raises.
    """
    try:
        return _parse_bounce(msg)
    except Exception as exc:  # pragma: no cover - a last guard
        return Bounce(kind="text", warnings=(f"unreadable bounce ({type(exc).__name__})",))


def _parts(msg: email.message.Message) -> list[email.message.Message]:
    out = []
    stack = [msg]
    while stack:
        part = stack.pop(0)
        out.append(part)
        if part.is_multipart() and part.get_content_type() != "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list):
                stack[0:0] = payload
    return out


def _text_of(part: email.message.Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:
            return payload.decode("utf-8", errors="replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _field(block: email.message.Message | None, name: str) -> str | None:
    if block is None:
        return None
    v = block.get(name)
    return _unfold(str(v)) if v is not None else None


def _after_type(value: str | None) -> str | None:
    """'rfc822; user@example.com' -> 'user@example.com'."""
    if value is None:
        return None
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _original_message_id(parts: list[email.message.Message], body_text: str) -> str | None:
    for part in parts:
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, email.message.Message) and inner.get("Message-ID"):
                return _unfold(str(inner["Message-ID"]))
        if ctype in ("text/rfc822-headers", "text/global-headers"):
            m = _MSGID.search(_text_of(part))
            if m:
                return m.group(1)
    m = _MSGID.search(body_text)
    return m.group(1) if m else None


def _dsn_blocks(part: email.message.Message) -> list[email.message.Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, email.message.Message)]
    text = payload if isinstance(payload, str) else ""
    blocks = []
    for chunk in re.split(r"\r?\n\s*\r?\n", text.strip()):
        if chunk.strip():
            blocks.append(email.parser.HeaderParser().parsestr(chunk.strip() + "\n"))
    return blocks


def _parse_bounce(msg: email.message.Message) -> Bounce | None:
    parts = _parts(msg)
    texts = [
        _text_of(p) for p in parts if p.get_content_maintype() == "text" and not p.is_multipart()
    ]
    if not msg.is_multipart():
        texts = [_text_of(msg)]
    body_text = "\n".join(texts)
    dsn = next((p for p in parts if p.get_content_type() == "message/delivery-status"), None)
    if dsn is not None:
        blocks = _dsn_blocks(dsn)
        per_msg = blocks[0] if blocks else None
        recips = [b for b in blocks[1:] if b.get("Action") or b.get("Final-Recipient")] or (
            [per_msg] if per_msg is not None and per_msg.get("Action") else []
        )
        chosen = next(
            (b for b in recips if (_field(b, "Action") or "").lower().startswith("failed")),
            recips[0] if recips else None,
        )
        status = _field(chosen, "Status")
        sm = _STATUS.search(status or "")
        warnings: tuple[str, ...] = () if chosen is not None else ("no recipient in the report",)
        return Bounce(
            kind="dsn",
            action=(_field(chosen, "Action") or "").lower() or None,
            status=".".join(sm.groups()) if sm else status,
            diagnostic=_after_type(_field(chosen, "Diagnostic-Code")),
            recipient=_after_type(_field(chosen, "Final-Recipient") or _field(chosen, "Original-Recipient")),
            reporting_mta=_after_type(_field(per_msg, "Reporting-MTA")),
            remote_mta=_after_type(_field(chosen, "Remote-MTA")),
            original_message_id=_original_message_id(parts, body_text),
            warnings=warnings,
        )
    return _parse_text_bounce(msg, parts, body_text)


def _parse_text_bounce(
    msg: email.message.Message, parts: list[email.message.Message], body: str
) -> Bounce | None:
    subject = _unfold(str(msg.get("Subject", "")))
    sender = _unfold(str(msg.get("From", "")))
    kind = None
    if "This is the qmail-send program" in body or "qmail-send" in body:
        kind = "qmail"
    elif re.search(r"Delivery has failed to these recipients|did not reach (?:the following|some or all)|"
                   r"Microsoft Exchange|Remote Server returned", body, re.IGNORECASE):
        kind = "exchange"
    elif "This is the mail system at host" in body or "Undelivered Mail Returned to Sender" in subject:
        kind = "postfix"
    elif _BOUNCE_SUBJECT.search(subject) and (_BOUNCE_FROM.search(sender) or msg.get("Return-Path", "").strip() in ("<>", "")):
        kind = "text"
    if kind is None:
        return None
    # the report part of the body: before the returned message
    cut = re.search(
        r"^-+ ?Below this line is a copy of the message|^-+ ?Original message|"
        r"^Original message headers:|^-+ ?The original message|^Content-Type: message/rfc822",
        body, re.IGNORECASE | re.MULTILINE,
    )
    report = body[: cut.start()] if cut else body
    returned = body[cut.start() :] if cut else ""
    sm = _STATUS.search(report)
    status = ".".join(sm.groups()) if sm else None
    diagnostic = None
    recipient = None
    ex = re.search(
        r"did not reach the following recipient\(s\):\s*\n\s*(\S+@[^\s]+)[^\n]*\n((?:[ \t]+\S[^\n]*\n?)+)",
        report,
    )
    if kind == "exchange" and ex:
        recipient = ex.group(1)
        diagnostic = " ".join(ex.group(2).split())
    elif kind == "qmail":
        m = re.search(r"^<([^>\s]+)>:\s*\n(.+?)(?:\n\s*\n|\Z)", report, re.MULTILINE | re.DOTALL)
        if m:
            recipient = m.group(1)
            diagnostic = " ".join(m.group(2).split())
    else:
        m = re.search(r"^\s*#?\s*([45]\d\d[ \-][^\n]*)", report, re.MULTILINE)
        if m:
            diagnostic = " ".join(m.group(1).split()).rstrip("#").strip()
        rm = re.search(r"<([^>\s@]+@[^>\s]+)>|^\s*([^\s@<>]+@[^\s@<>]+)\s*$", report, re.MULTILINE)
        if rm:
            recipient = rm.group(1) or rm.group(2)
    if status is None and diagnostic:
        code = re.match(r"([45])\d\d", diagnostic)
        if code:
            status = f"{code.group(1)}.0.0"
    action = None
    if status:
        action = "failed" if status.startswith("5") else "delayed" if status.startswith("4") else None
    elif re.search(r"permanent|given up|could not be delivered|undeliverable|did not reach",
                   report, re.IGNORECASE):
        action = "failed"
    orig = None
    mm = _MSGID.search(returned) if returned else None
    if mm:
        orig = mm.group(1)
    else:
        orig = _original_message_id(parts[1:], "")
    if orig is None and msg.get("In-Reply-To"):
        orig = _unfold(str(msg["In-Reply-To"]))
    warnings = () if status else ("no status code in the bounce",)
    return Bounce(
        kind=kind,
        action=action,
        status=status,
        diagnostic=diagnostic,
        recipient=recipient,
        original_message_id=orig,
        warnings=warnings,
    )


# --------------------------------------------------------------------------
# display safety

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_MARKUP = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def valid_text(text: str) -> str:
    """Text that encodes as UTF-8: undecodable bytes kept by 'surrogateescape' become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode(
            "utf-8", "replace").decode("utf-8")


def plain_text(text: object) -> str:
    """Untrusted text made safe for a terminal or a file read on one (no Rich involved):
    ANSI escape sequences shown as text (``\\x1b[31m``), other C0/C1 control characters
    as ``\\xNN``, tabs and newlines as spaces."""
    s = valid_text("" if text is None else str(text))
    s = s.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    s = _ANSI.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), s)
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", s)


def safe_text(text: object) -> str:
    """Untrusted header text made safe for a terminal and for Rich markup: ``plain_text``,
    and ``[tag]`` markup escaped the way ``rich.markup.escape`` does it."""
    return _MARKUP.sub(lambda m: f"{m.group(1)}{m.group(1)}\\{m.group(2)}", plain_text(text))
