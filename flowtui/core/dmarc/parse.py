"""DMARC aggregate reports from bytes: .xml, .xml.gz, .zip, or a mail carrying one.

Everything here is pure (no I/O beyond the bytes given) and expects hostile
input: the raw size is capped, decompression stops at ``MAX_XML_BYTES`` (zip
and gzip bombs), XML is parsed with defusedxml with DTDs forbidden (so no
entity expansion, no external entities), and every problem is one
``ReportError`` whose message is one line meant for the user.
"""

from __future__ import annotations

import email
import email.policy
import io
import ipaddress
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

MAX_RAW_BYTES = 20 * 1024 * 1024  # a file or mail as given
MAX_XML_BYTES = 50 * 1024 * 1024  # one report once decompressed
MAX_RECORDS = 200_000
MAX_TEXT = 1024  # any one value kept from a report
_CHUNK = 64 * 1024

# Elements are matched by local name, so any namespace reads the same: none (RFC 7489),
# "urn:ietf:params:xml:ns:dmarc-2.0" (the DMARCbis draft), or a reporter's own.

class ReportError(ValueError):
    """A report (or what claimed to be one) that cannot be used: one line for the user."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One <dkim> or <spf> of a record's <auth_results>."""

    method: str  # "dkim" | "spf"
    domain: str | None
    result: str | None
    selector: str | None = None  # dkim
    scope: str | None = None  # spf: "mfrom" | "helo"


@dataclass(frozen=True, slots=True)
class Record:
    source_ip: str
    count: int
    disposition: str | None
    dkim: str | None  # policy_evaluated: the aligned DKIM result
    spf: str | None  # policy_evaluated: the aligned SPF result
    header_from: str | None
    envelope_from: str | None = None
    envelope_to: str | None = None
    reasons: tuple[tuple[str, str | None], ...] = ()
    auth: tuple[AuthResult, ...] = ()

    @property
    def dmarc_pass(self) -> bool:
        return self.dkim == "pass" or self.spf == "pass"


@dataclass(frozen=True, slots=True)
class Report:
    org: str
    report_id: str
    begin: int
    end: int
    domain: str
    email: str | None = None
    version: str | None = None
    policy: dict[str, str | None] = field(default_factory=dict)  # p, sp, pct, adkim, aspf, np, fo, testing
    records: tuple[Record, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def messages(self) -> int:
        return sum(r.count for r in self.records)


# --------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------

def _kind(data: bytes) -> str:
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:4] == b"PK\x03\x04":
        return "zip"
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "xml"
    if re.match(rb"[\x21-\x39\x3b-\x7e]+:", head) or head[:5] == b"From ":
        return "mail"
    return "unknown"


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB"


def gunzip(data: bytes, limit: int = MAX_XML_BYTES) -> bytes:
    """Decompress gzip (all members) without ever holding more than ``limit`` bytes."""
    out = bytearray()
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=31)
        buf = rest
        while True:
            try:
                chunk = d.decompress(buf, _CHUNK)
            except zlib.error as exc:
                raise ReportError(f"not valid gzip data ({exc})") from None
            out += chunk
            if len(out) > limit:
                raise ReportError(f"gzip expands beyond {_mib(limit)} (a decompression bomb?)")
            buf = d.unconsumed_tail
            if d.eof or (not buf and not chunk):
                break
        if not d.eof:
            raise ReportError("truncated gzip data")
        rest = d.unused_data.lstrip(b"\x00")
    return bytes(out)


def unzip(data: bytes, limit: int = MAX_XML_BYTES) -> bytes:
    """The one report inside a zip, read in chunks up to ``limit`` (the sizes in
    the archive's directory are not trusted)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise ReportError(f"not a valid zip archive ({exc})") from None
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        if not members:
            raise ReportError("the zip archive is empty")
        if len(members) > 1:
            raise ReportError(f"the zip archive holds {len(members)} files; a report zip holds one XML file")
        info = members[0]
        if info.file_size > limit:
            raise ReportError(f"the file in the zip expands to {info.file_size} bytes, over {_mib(limit)} (a decompression bomb?)")
        out = bytearray()
        try:
            with zf.open(info) as f:
                while chunk := f.read(_CHUNK):
                    out += chunk
                    if len(out) > limit:
                        raise ReportError(f"the file in the zip expands beyond {_mib(limit)} (a decompression bomb?)")
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            raise ReportError(f"cannot read the zip archive ({' '.join(str(exc).split())})") from None
    if _kind(bytes(out[:4])) == "gzip":
        return gunzip(bytes(out), limit)
    return bytes(out)


_REPORT_TYPES = {
    "application/gzip", "application/x-gzip", "application/gzip-compressed", "application/x-gunzip",
    "application/zip", "application/x-zip", "application/x-zip-compressed", "application/octet-stream",
    "text/xml", "application/xml",
}


def xml_documents(data: bytes, limit: int = MAX_XML_BYTES) -> list[bytes]:
    """The XML report(s) in a file or a mail. Raises ReportError when there is none."""
    if len(data) > MAX_RAW_BYTES:
        raise ReportError(f"{len(data)} bytes is over the {_mib(MAX_RAW_BYTES)} limit for a report file or mail")
    kind = _kind(data)
    if kind == "gzip":
        return [gunzip(data, limit)]
    if kind == "zip":
        return [unzip(data, limit)]
    if kind == "xml":
        if len(data) > limit:
            raise ReportError(f"the XML is over {_mib(limit)}")
        return [data]
    if kind == "mail":
        return _from_mail(data, limit)
    raise ReportError("not a DMARC report: neither XML, gzip, zip nor a mail")


def _from_mail(data: bytes, limit: int) -> list[bytes]:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    found: list[bytes] = []
    problems: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = (part.get_content_type() or "").lower()
        name = (part.get_filename() or "").lower()
        looks = ctype in _REPORT_TYPES or name.endswith((".xml", ".gz", ".zip", ".xml.gz"))
        if not looks and part is not msg:
            continue
        try:
            payload = part.get_payload(decode=True) or b""
        except Exception:  # a broken transfer encoding
            problems.append("an attachment has a broken transfer encoding")
            continue
        kind = _kind(payload)
        try:
            if kind == "gzip":
                found.append(gunzip(payload, limit))
            elif kind == "zip":
                found.append(unzip(payload, limit))
            elif kind == "xml" and b"feedback" in payload[:4096]:
                found.append(payload)
        except ReportError as exc:
            problems.append(f"attachment {part.get_filename() or ctype}: {exc}")
    if found:
        return found
    if problems:
        raise ReportError(problems[0])
    raise ReportError("a mail without a DMARC report (no .xml, .xml.gz or .zip attachment)")


# --------------------------------------------------------------------------
# XML
# --------------------------------------------------------------------------

def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(el: Element | None, name: str) -> Element | None:
    if el is None:
        return None
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _children(el: Element | None, name: str) -> list[Element]:
    return [] if el is None else [c for c in el if _local(c.tag) == name]


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text[:MAX_TEXT] if text else None


def _text(el: Element | None, *path: str) -> str | None:
    for name in path:
        el = _child(el, name)
    return _clean(el.text) if el is not None else None


def _lower(el: Element | None, *path: str) -> str | None:
    v = _text(el, *path)
    return v.lower() if v is not None else None


def _need(value: str | None, what: str) -> str:
    if not value:
        raise ReportError(f"missing {what}")
    return value


MAX_EPOCH = 2**33  # the year 2242: a date beyond is a broken report
MAX_COUNT = 2**40


def _int(value: str | None, what: str, low: int = 0, high: int = MAX_COUNT) -> int:
    text = _need(value, what)
    if len(text) > 20:
        raise ReportError(f"{what} is not a plausible number: {text[:24]!r}...")
    try:
        n = int(text)
    except ValueError:
        raise ReportError(f"{what} is not a whole number: {text[:40]!r}") from None
    if n < low:
        raise ReportError(f"{what} is negative: {n}")
    if n > high:
        raise ReportError(f"{what} is implausibly large: {n}")
    return n


def parse_xml(data: bytes) -> Report:
    """One aggregate report from its XML. Raises ReportError (one line)."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ReportError(f"refused: the XML declares a DTD or entities ({type(exc).__name__}); reports never need them") from None
    except ParseError as exc:
        raise ReportError(f"not well-formed XML ({exc})") from None
    except LookupError as exc:  # <?xml encoding="..."?> that Python does not know
        raise ReportError(f"not a usable XML document ({' '.join(str(exc).split())[:80]})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ReportError(f"not a usable XML document ({type(exc).__name__})") from None
    if _local(root.tag) != "feedback":
        raise ReportError(f"not a DMARC aggregate report: the root element is <{_local(root.tag)[:40]}>, not <feedback>")
    meta = _child(root, "report_metadata")
    if meta is None:
        raise ReportError("missing report_metadata")
    org = _need(_text(meta, "org_name"), "report_metadata/org_name")
    report_id = _need(_text(meta, "report_id"), "report_metadata/report_id")
    dr = _child(meta, "date_range")
    begin = _int(_text(dr, "begin"), "report_metadata/date_range/begin", high=MAX_EPOCH)
    end = _int(_text(dr, "end"), "report_metadata/date_range/end", high=MAX_EPOCH)
    if end < begin:
        raise ReportError(f"date_range ends ({end}) before it begins ({begin})")
    pol = _child(root, "policy_published")
    if pol is None:
        raise ReportError("missing policy_published")
    domain = _need(_lower(pol, "domain"), "policy_published/domain").rstrip(".")
    policy = {k: _lower(pol, k) for k in ("p", "sp", "pct", "adkim", "aspf", "np", "fo", "testing", "discovery_method")}
    records = []
    for i, rec in enumerate(_children(root, "record")):
        if i >= MAX_RECORDS:
            raise ReportError(f"more than {MAX_RECORDS} records")
        records.append(_record(rec, i))
    return Report(
        org=org, report_id=report_id, begin=begin, end=end, domain=domain,
        email=_text(meta, "email"), version=_text(root, "version"),
        policy={k: v for k, v in policy.items() if v is not None},
        records=tuple(records), errors=tuple(e for e in (_clean(x.text) for x in _children(meta, "error")) if e),
    )


def _record(rec: Element, i: int) -> Record:
    where = f"record {i + 1}"
    row = _child(rec, "row")
    if row is None:
        raise ReportError(f"{where}: missing row")
    ip_text = _need(_text(row, "source_ip"), f"{where}: row/source_ip")
    try:
        ip = str(ipaddress.ip_address(ip_text))
    except ValueError:
        raise ReportError(f"{where}: source_ip is not an IP address: {ip_text[:60]!r}") from None
    count = _int(_text(row, "count"), f"{where}: row/count")
    pe = _child(row, "policy_evaluated")
    reasons = tuple(
        (_lower(r, "type") or "", _text(r, "comment")) for r in _children(pe, "reason")
    )
    ids = _child(rec, "identifiers")
    ar = _child(rec, "auth_results")
    auth = []
    for el in ar if ar is not None else ():
        method = _local(el.tag)
        if method == "dkim":
            auth.append(AuthResult("dkim", _lower(el, "domain"), _lower(el, "result"), selector=_text(el, "selector")))
        elif method == "spf":
            auth.append(AuthResult("spf", _lower(el, "domain"), _lower(el, "result"), scope=_lower(el, "scope")))
    return Record(
        source_ip=ip, count=count,
        disposition=_lower(pe, "disposition"), dkim=_lower(pe, "dkim"), spf=_lower(pe, "spf"),
        header_from=_lower(ids, "header_from"), envelope_from=_lower(ids, "envelope_from"),
        envelope_to=_lower(ids, "envelope_to"), reasons=reasons, auth=tuple(auth),
    )


def parse_reports(data: bytes) -> list[Report]:
    """Every report in a file or mail (usually one). Raises ReportError (one line)."""
    return [parse_xml(doc) for doc in xml_documents(data)]
