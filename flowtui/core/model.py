"""Frozen data shared across flowtui's layers.

Only what the path inspector needs lives here so far; other parts of the
project add their own models (routes, probe results, alerts) beside these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

# The keys of one hop in ``flowtui path --json`` (DESIGN.md "Paths"), in order.
HOP_JSON_KEYS: tuple[str, ...] = (
    "index",
    "from_host",
    "from_rdns",
    "from_ip",
    "by_host",
    "with",
    "id",
    "for",
    "via",
    "envelope_from",
    "tls",
    "timestamp",
    "delay_s",
)


def _iso_utc(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Hop:
    """One Received header, read as one hop of a message's path.

    ``index`` 0 is the origin (the bottom-most Received header).  ``timestamp``
    is an aware UTC datetime or None.  ``raw`` is the unfolded header text.
    """

    index: int
    from_host: str | None = None
    from_rdns: str | None = None
    from_ip: str | None = None
    by_host: str | None = None
    with_protocol: str | None = None
    id: str | None = None
    for_addr: str | None = None
    via: str | None = None
    envelope_from: str | None = None
    tls: bool | None = None
    timestamp: datetime | None = None
    delay_s: float | None = None
    raw: str = ""

    def to_json_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "from_host": self.from_host,
            "from_rdns": self.from_rdns,
            "from_ip": self.from_ip,
            "by_host": self.by_host,
            "with": self.with_protocol,
            "id": self.id,
            "for": self.for_addr,
            "via": self.via,
            "envelope_from": self.envelope_from,
            "tls": self.tls,
            "timestamp": _iso_utc(self.timestamp),
            "delay_s": self.delay_s,
        }


@dataclass(frozen=True, slots=True)
class PathResult:
    """The parsed Received chain of one message, origin first."""

    hops: tuple[Hop, ...] = ()
    total_s: float | None = None
    warnings: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, object]:
        """The JSON of DESIGN.md "Paths": hops, total_s, warnings."""
        return {
            "hops": [hop.to_json_dict() for hop in self.hops],
            "total_s": self.total_s,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One result of an Authentication-Results header (RFC 8601 resinfo)."""

    method: str
    result: str
    reason: str | None = None
    comment: str | None = None
    # (ptype.property, value) pairs in header order, e.g. ("header.d", "example.com")
    properties: tuple[tuple[str, str], ...] = ()

    def prop(self, name: str) -> str | None:
        """The value of property ``name`` (e.g. ``"header.d"``), or None."""
        name = name.lower()
        for key, value in self.properties:
            if key.lower() == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class AuthResults:
    """The results of the chosen (top-most trusted) Authentication-Results header.

    ``spf``, ``dkim`` and ``dmarc`` are the deciding result of each method (for
    DKIM: the first passing signature, else the first one); ``results`` holds
    every result in header order.
    """

    authserv_id: str | None = None
    spf: MethodResult | None = None
    dkim: MethodResult | None = None
    dmarc: MethodResult | None = None
    results: tuple[MethodResult, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a delivery failure report says about one failed recipient.

    ``kind`` is "dsn" for an RFC 3464 report, otherwise the family of the
    non-standard body it was read from ("qmail", "exchange", "postfix", "text").
    """

    kind: str
    action: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    recipient: str | None = None
    reporting_mta: str | None = None
    remote_mta: str | None = None
    original_message_id: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
