"""Frozen data shared across flowtui's layers.

Only what the path inspector needs lives here so far; other parts of the
project add their own models (routes, probe results, alerts) beside these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

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


# --------------------------------------------------------------------------
# Configuration (DESIGN.md "Configuration"): what config.py builds from TOML.
# --------------------------------------------------------------------------

class Security(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class Secret:
    """A password or token. Its value never shows in repr, str or logs."""

    value: str = field(repr=False)
    source: str = ""  # where it came from, safe to show: "env FLOWTUI_X", "command", "literal"

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return f"Secret(<hidden>, source={self.source!r})"


AUTH_METHODS: tuple[str, ...] = ("password", "xoauth2", "oauthbearer")
OAUTH2_FLOWS: tuple[str, ...] = ("refresh_token", "client_credentials")


@dataclass(frozen=True, slots=True)
class OAuth2Settings:
    """Where a server's OAuth2 access token comes from (``auth = "xoauth2" | "oauthbearer"``).

    Either ``token_command`` (a command that prints a token), or the built-in
    flow against ``token_url``. Secrets are resolved when the config loads; the
    access token itself is fetched at run time and held in memory only.
    """

    token_command: str | None = None
    token_url: str | None = None
    flow: str = "refresh_token"  # one of OAUTH2_FLOWS
    client_id: str | None = None
    client_secret: Secret | None = None
    refresh_token: Secret | None = None
    scope: str | None = None
    verify_tls: bool = True  # of the token endpoint (https)
    base_dir: str | None = None  # token_command runs here (the config file's directory)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """One SMTP or IMAP server of a route."""

    host: str
    port: int
    security: Security
    username: str | None = None
    password: Secret | None = None
    verify_tls: bool = True
    ca_file: str | None = None  # absolute path; None means the system's CAs
    timeout_s: float = 30.0
    auth: str = "password"  # one of AUTH_METHODS
    oauth2: OAuth2Settings | None = None  # set when auth is not "password"

    def mailbox_key(self) -> tuple[str, int, str | None]:
        """Routes whose IMAP settings share this key share one connection."""
        return (self.host, self.port, self.username)


@dataclass(frozen=True, slots=True)
class ImapSettings(ServerSettings):
    folders: tuple[str, ...] = ("INBOX",)
    junk_folders: tuple[str, ...] | None = None  # None: found by SPECIAL-USE \Junk
    poll_interval_s: float = 10.0  # only where the server has no IDLE
    idle_renew_s: float = 600.0  # IDLE is re-issued well inside the 29-min limit


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    mail_from: str
    rcpt_to: str
    smtp: ServerSettings
    imap: ImapSettings
    interval_s: float = 60.0
    timeout_s: float = 600.0
    jitter_s: float = 2.0
    subject: str = "flowtui probe"
    body: str = "This is an automated mail-flow probe sent by flowtui. It is deleted on arrival."
    attachment_bytes: int = 0
    warn_s: float = 90.0
    crit_s: float = 300.0
    require_tls: bool = False
    bounces: ImapSettings | None = None  # the envelope sender's mailbox, where bounces come back


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    database: str  # absolute path
    interval_s: float = 60.0
    timeout_s: float = 600.0
    secret_file: str | None = None  # absolute; default: beside the database
    retention_s: float = 30 * 86400.0  # raw probes and hops are kept this long
    rollup_retention_s: float = 730 * 86400.0  # hourly and daily roll-ups are kept this long


# --------------------------------------------------------------------------
# Alerts, DNS checks and notifiers (DESIGN.md "Alerts")
# --------------------------------------------------------------------------

ALERT_KINDS: tuple[str, ...] = (
    "latency", "lost", "send_failed", "bounced", "junk", "corrupted", "failures",
    "loss_ratio", "auth", "tls", "path", "hop_count", "dns",
    "dmarc_pass_rate", "dmarc_new_source", "dmarc_failing",  # DMARC aggregate reports ([dmarc])
)
DMARC_ALERT_KINDS: tuple[str, ...] = ("dmarc_pass_rate", "dmarc_new_source", "dmarc_failing")
SEVERITIES: tuple[str, ...] = ("info", "warn", "crit")


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert rule. ``routes`` empty means every route (not used by "dns").

    Which fields matter depends on ``kind``: latency uses metric/warn_s/crit_s
    (None: the route's) and m of n; lost, send_failed, bounced, junk and
    corrupted fire when m of the last n decided probes are in that state;
    failures needs ``count`` failed probes in a row; loss_ratio compares the
    failed share of the probes sent within ``window_s`` with ``ratio``; auth
    checks ``methods``; path and hop_count adopt a new path after ``count``
    probes on it. ``clear`` is the hysteresis: how many good probes in a row
    resolve a firing alert.
    """

    name: str
    kind: str
    severity: str | None = None  # None: the kind's default (latency: warn then crit)
    routes: tuple[str, ...] = ()
    metric: str = "total"
    warn_s: float | None = None
    crit_s: float | None = None
    m: int = 1
    n: int = 1
    count: int = 3
    window_s: float = 3600.0
    ratio: float = 0.2
    methods: tuple[str, ...] = ("spf", "dkim", "dmarc")
    clear: int = 1
    # dmarc_*: which domains (empty: all), the lowest good pass share, and a volume in messages
    domains: tuple[str, ...] = ()
    pass_rate: float = 0.9
    volume: int | None = None  # None: the kind's default


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """``[dns]``: which domains' records are checked, how often, with which resolver."""

    domains: tuple[str, ...] = ()
    records: tuple[str, ...] = ("MX", "SPF", "DMARC", "MTA-STS", "TLSRPT")
    nameservers: tuple[tuple[str, int], ...] = ()  # empty: the system's resolver
    interval_s: float = 3600.0
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class DmarcSettings:
    """``[dmarc]``: where DMARC aggregate reports arrive and what to do with imported ones.

    ``on_import``: "remember" (leave the mail as it is; its UID is remembered),
    "seen" (set \\Seen) or "move" (to ``move_to``).
    """

    imap: ImapSettings
    folder: str = "INBOX"
    interval_s: float = 900.0
    on_import: str = "remember"
    move_to: str | None = None


@dataclass(frozen=True, slots=True)
class NotifierSettings:
    """One ``[[notify]]`` entry: kind is "log", "bell", "command" or "webhook"."""

    kind: str
    min_severity: str = "warn"
    command: str | None = None
    url: str | None = None
    format: str = "json"  # webhook body: "json", "slack" or "teams"
    timeout_s: float = 10.0
    retries: int = 2
    on_resolve: bool = True


@dataclass(frozen=True, slots=True)
class UiSettings:
    """``[ui]``: the theme by name and an extra folder of user theme files."""

    theme: str | None = None
    theme_dir: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    monitor: MonitorSettings
    routes: tuple[Route, ...]
    alerts: tuple[AlertRule, ...] = ()  # global rules and every route's own, defaults included
    dns: DnsSettings = DnsSettings()
    notify: tuple[NotifierSettings, ...] = ()
    ui: UiSettings = UiSettings()
    dmarc: DmarcSettings | None = None


# --------------------------------------------------------------------------
# Probe results
# --------------------------------------------------------------------------


class ProbeState(StrEnum):
    PENDING = "pending"  # sent, not yet seen
    DELIVERED = "delivered"
    LATE = "late"  # seen after the route's timeout had called it lost
    LOST = "lost"
    JUNK = "junk"  # found in a junk folder
    CORRUPTED = "corrupted"  # content hash does not match what was sent
    SEND_FAILED = "send_failed"
    BOUNCED = "bounced"


FINAL_OK = frozenset({ProbeState.DELIVERED})
FAILED = frozenset(
    {ProbeState.LOST, ProbeState.SEND_FAILED, ProbeState.BOUNCED, ProbeState.CORRUPTED, ProbeState.JUNK}
)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe, at its latest state. Times are seconds; ``*_at`` are epoch wall times.

    ``phases`` is the waterfall in order, name -> seconds from the start of
    the probe (connect, tls, auth, data_accepted, detected, ...).
    """

    route: str
    probe_id: str
    seq: int
    state: ProbeState
    sent_at: float
    submit_s: float | None = None
    transit_s: float | None = None
    total_s: float | None = None
    detected_at: float | None = None
    detect_uncertainty_s: float | None = None
    queue_id: str | None = None
    folder: str | None = None
    phases: tuple[tuple[str, float], ...] = ()
    hops: tuple[Hop, ...] = ()
    auth: AuthResults | None = None
    bounce: Bounce | None = None
    error: str | None = None
    error_phase: str | None = None
    content_ok: bool | None = None
    message_id: str | None = None
