"""TOML config -> frozen models (DESIGN.md "Configuration").

``load_config(path)`` reads and validates the whole file and returns a
:class:`~flowtui.core.model.Config`; any problem raises ``UserError`` (exit
code 2) with ONE line that names the file, the route (by name, or
``routes[i]`` while it has none) and the key::

    config.toml: route "hq-to-gmail": smtp.port: expected an integer 1-65535, got "abc"

The file is validated in full before any password is looked up, so a typo
never runs a ``password_command``.  Password values never appear in an error
message (a wrongly typed password is described by its type only).

Things that are legal but unwise are not errors: ``config_warnings(config)``
returns them as one-line strings (a literal password in a file others can
read, TLS verification switched off, a password sent over an unencrypted
connection to a host that is not loopback).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import ssl
import re
import signal
import stat
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowtui.core.errors import UserError
from flowtui.core.model import (
    ALERT_KINDS,
    DMARC_ALERT_KINDS,
    SEVERITIES,
    AUTH_METHODS,
    OAUTH2_FLOWS,
    AlertRule,
    Config,
    DmarcSettings,
    OAuth2Settings,
    DnsSettings,
    NotifierSettings,
    ImapSettings,
    MonitorSettings,
    Route,
    Secret,
    Security,
    ServerSettings,
    UiSettings,
)

# How long a password_command may run; a module constant so tests can shorten it.
PASSWORD_COMMAND_TIMEOUT_S = 10.0

# Largest generated attachment: a probe is not a load test.
MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024

# IMAP servers may drop an IDLE after 30 minutes (RFC 2177 says re-issue within 29).
IDLE_LIMIT_S = 29 * 60

TOP_KEYS = ("monitor", "routes", "alerts", "dns", "notify", "ui", "dmarc")
UI_KEYS = ("theme", "theme_dir")
RESERVED_TOP_KEYS: tuple[str, ...] = ()
MONITOR_KEYS = ("database", "interval", "timeout", "secret_file", "default_alerts", "retention", "rollup_retention")
ROUTE_KEYS = (
    "name", "interval", "timeout", "jitter", "from", "to", "subject", "body",
    "attachment_size", "warn", "crit", "require_tls", "smtp", "imap", "bounces", "alerts",
)
ALERT_KEYS = (
    "name", "kind", "severity", "routes", "metric", "warn", "crit", "m", "n", "count",
    "window", "ratio", "methods", "clear", "domains", "pass_rate", "volume",
)
DMARC_KEYS = ("imap", "folder", "interval", "on_import")
DNS_KEYS = ("domains", "records", "nameservers", "interval", "timeout")
DNS_RECORDS = ("MX", "SPF", "DMARC", "MTA-STS", "TLSRPT")
NOTIFY_KEYS = ("kind", "min_severity", "command", "url", "format", "timeout", "retries", "on_resolve")
NOTIFY_KINDS = ("log", "bell", "command", "webhook")
WEBHOOK_FORMATS = ("json", "slack", "teams")
SERVER_KEYS = (
    "host", "port", "security", "username", "password", "password_env",
    "password_command", "verify_tls", "ca_file", "timeout", "auth", "token_command", "oauth2",
)
OAUTH2_KEYS = (
    "token_url", "client_id", "client_secret_env", "client_secret_command", "refresh_token_env",
    "refresh_token_command", "scope", "flow", "verify_tls",
)
IMAP_ONLY_KEYS = ("folders", "junk_folders", "poll_interval", "idle_renew")
PASSWORD_KEYS = ("password", "password_env", "password_command")

DEFAULT_SMTP_PORTS = {Security.NONE: 25, Security.STARTTLS: 587, Security.TLS: 465}
DEFAULT_IMAP_PORTS = {Security.NONE: 143, Security.STARTTLS: 143, Security.TLS: 993}
DEFAULT_SECURITY = {"smtp": Security.STARTTLS, "imap": Security.TLS}

# warn/crit defaults: a route over the internet, and a route whose servers are
# both on loopback (a lab), where a few seconds is already slow.
DEFAULT_WARN_S, DEFAULT_CRIT_S = 90.0, 300.0
LOOPBACK_WARN_S, LOOPBACK_CRIT_S = 5.0, 30.0


# --------------------------------------------------------------------------
# Durations and sizes
# --------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


MAX_DURATION_S = 365 * 86400.0
MAX_PASSWORD_CHARS = 4096
MAX_ROUTE_NAME_CHARS = 100


def parse_duration(text: str) -> float:
    """Seconds in a duration string: ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``,
    ``"1d"``, or parts of them in a row (``"1m30s"``, ``"1h 30m"``).

    Raises ``ValueError`` with a message meant for the user.  Plain numbers
    (``30`` or ``"30"``) are rejected: the unit is not guessed.
    """
    if isinstance(text, bool) or not isinstance(text, str):
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            raise ValueError(f'expected a duration string such as "{_fmt_num(text)}s", got the plain number {_fmt_num(text)} (add a unit: ms, s, m, h, d)')
        raise ValueError(f'expected a duration string such as "30s", got {_describe(text)}')
    compact = "".join(text.split()).lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", compact):
        raise ValueError(f'expected a duration such as "{compact}s", got "{text}" (add a unit: ms, s, m, h, d)')
    if not compact or not _DURATION_FULL.fullmatch(compact):
        raise ValueError(f'expected a duration such as "500ms", "30s", "5m", "1h", "1d" or "1m30s", got {_describe(text)}')
    total = sum(float(num) * _DURATION_UNITS[unit] for num, unit in _DURATION_PART.findall(compact))
    if not math.isfinite(total) or total > MAX_DURATION_S:
        raise ValueError(f"duration {_describe(text)} is too large (at most 365d)")
    return total


MAX_RETENTION_S = 100 * 365 * 86400.0


def parse_long_duration(text: str) -> float:
    """``parse_duration`` plus a ``y`` unit (365 days) and a limit of 100 years, for
    retentions: ``"30d"``, ``"2y"``, ``"1y 6m"`` is one year and six minutes, as ever."""
    if isinstance(text, str):
        compact = "".join(text.split()).lower()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)y(.*)", compact)
        if m:
            years = float(m.group(1)) * 365 * 86400.0
            rest = parse_duration(m.group(2)) if m.group(2) else 0.0
            total = years + rest
            if not math.isfinite(total) or total > MAX_RETENTION_S:
                raise ValueError(f"duration {_describe(text)} is too large (at most 100y)")
            return total
        if re.fullmatch(r"\d+(?:\.\d+)?d", compact) and float(compact[:-1]) * 86400.0 <= MAX_RETENTION_S:
            return float(compact[:-1]) * 86400.0  # "730d": days beyond parse_duration's 365d
    return parse_duration(text)


def format_duration(seconds: float) -> str:
    """A short duration string that ``parse_duration`` reads back: 90 -> "1m30s"."""
    if seconds < 1:
        ms = round(seconds * 1000)
        return f"{ms}ms"
    parts = []
    rest = round(seconds * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if rest:
        secs = rest / 1000
        parts.append(f"{_fmt_num(secs)}s")
    return "".join(parts) or "0s"


_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_size(value: object) -> int:
    """Bytes in a size: an integer, or a string such as ``"10KB"``, ``"1MB"``,
    ``"512KiB"`` (KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024)."""
    if isinstance(value, bool):
        raise ValueError(f'expected a size such as "10KB" or a number of bytes, got {_describe(value)}')
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        m = _SIZE.fullmatch(value.strip().lower())
        if not m or (m.group(2) or "b") not in _SIZE_UNITS:
            raise ValueError(f'expected a size such as "10KB", "1MB", "512KiB" or a number of bytes, got {_describe(value)}')
        size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2) or "b"])
    else:
        raise ValueError(f'expected a size such as "10KB" or a number of bytes, got {_describe(value)}')
    if size < 0:
        raise ValueError(f"expected a size of 0 or more bytes, got {_describe(value)}")
    if size > MAX_ATTACHMENT_BYTES:
        raise ValueError(f"{_describe(value)} is too large (at most {MAX_ATTACHMENT_BYTES // 1024**2}MiB)")
    return size


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _describe(value: object) -> str:
    """A short, one-line rendering of a TOML value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return '"' + shown.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    return _type_name(value)


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time" if value is not None else "nothing"


# --------------------------------------------------------------------------
# The reader: one object per file, so every error knows where it is
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PasswordSpec:
    """Where a password is to come from; resolved after the whole file is valid."""

    kind: str  # "password" | "password_env" | "password_command"
    value: str


@dataclass(slots=True)
class _Where:
    """The part of an error message before the key: file and route."""

    file: str
    route: str | None = None

    def error(self, key: str | None, message: str) -> UserError:
        parts = [self.file]
        if self.route:
            parts.append(self.route)
        if key:
            parts.append(key)
        return UserError(": ".join(parts + [message]), code=2)


def _is_control(text: str, allow: str = "") -> bool:
    return any((ord(c) < 32 or ord(c) == 127) and c not in allow for c in text)


class _Reader:
    def __init__(self, path: Path, shown: str) -> None:
        self.path = path
        self.base = path.parent
        self.where = _Where(shown)

    # ---- generic checks -------------------------------------------------

    def fail(self, key: str | None, message: str) -> UserError:
        return self.where.error(key, message)

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str,
                   elsewhere: Mapping[str, str] | None = None) -> None:
        for key in table:
            if key in allowed:
                continue
            if elsewhere and key in elsewhere:
                raise self.fail(prefix or None, f'key "{key}" is only valid in {elsewhere[key]}')
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (valid keys: {', '.join(allowed)})"
            raise self.fail(prefix or None, f'unknown key "{key}"{hint}')

    def table(self, parent: Mapping[str, Any], key: str, name: str, header: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"expected a table ({header}), got {_type_name(value)}")
        return value

    def string(self, table: Mapping[str, Any], key: str, name: str, *, required: bool = False,
               default: str | None = None, secret: bool = False, multiline: bool = False) -> str | None:
        if key not in table:
            if required:
                raise self.fail(None, f'missing required key "{name}"')
            return default
        value = table[key]
        if not isinstance(value, str):
            got = _type_name(value) if secret else _describe(value)
            raise self.fail(name, f"expected a string, got {got}")
        if required and not value.strip():
            raise self.fail(name, "must not be empty")
        if _is_control(value, allow="\t\r\n" if multiline else ""):
            raise self.fail(name, "must not contain control characters" + ("" if multiline else " or line breaks"))
        return value

    def boolean(self, table: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(name, f"expected true or false, got {_describe(value)}")
        return value

    def duration(self, table: Mapping[str, Any], key: str, name: str, default: float | str, *,
                 allow_zero: bool = False) -> float:
        if key not in table:
            return parse_duration(default) if isinstance(default, str) else float(default)
        try:
            seconds = parse_duration(table[key])
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None
        if seconds < 0 or (seconds == 0 and not allow_zero):
            raise self.fail(name, f"must be {'0 or more' if allow_zero else 'more than 0'}, got {_describe(table[key])}")
        return seconds

    def long_duration(self, table: Mapping[str, Any], key: str, name: str, default: str) -> float:
        """A retention: a duration that may also count years ("2y" = 730d), at least 1h."""
        value = table.get(key, default)
        try:
            seconds = parse_long_duration(value)
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None
        if seconds < 3600:
            raise self.fail(name, f"must be at least 1h, got {_describe(value)}")
        return seconds

    def path_value(self, table: Mapping[str, Any], key: str, name: str) -> str | None:
        value = self.string(table, key, name)
        if value is None:
            return None
        if not value.strip():
            raise self.fail(name, "must not be empty")
        return str((self.base / os.path.expanduser(value)).resolve())

    # ---- sections ---------------------------------------------------------

    def monitor(self, doc: Mapping[str, Any]) -> MonitorSettings:
        table = self.table(doc, "monitor", "monitor", "[monitor]")
        self.check_keys(table, MONITOR_KEYS, "monitor")
        self.boolean(table, "default_alerts", "monitor.default_alerts", True)  # read in load_config
        database = self.path_value(table, "database", "monitor.database") or str((self.base / "flowtui.db").resolve())
        secret_file = self.path_value(table, "secret_file", "monitor.secret_file") or database + ".secret"
        return MonitorSettings(
            database=database,
            interval_s=self.duration(table, "interval", "monitor.interval", "60s"),
            timeout_s=self.duration(table, "timeout", "monitor.timeout", "10m"),
            secret_file=secret_file,
            retention_s=self.long_duration(table, "retention", "monitor.retention", "30d"),
            rollup_retention_s=self.long_duration(table, "rollup_retention", "monitor.rollup_retention", "730d"),
        )

    def ui(self, doc: Mapping[str, Any]) -> UiSettings:
        table = self.table(doc, "ui", "ui", "[ui]")
        self.check_keys(table, UI_KEYS, "ui")
        theme = self.string(table, "theme", "ui.theme")
        if theme is not None and not theme.strip():
            raise self.fail("ui.theme", "must not be empty")
        return UiSettings(theme=theme, theme_dir=self.path_value(table, "theme_dir", "ui.theme_dir"))

    def routes(self, doc: Mapping[str, Any], monitor: MonitorSettings) -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
        raw = doc.get("routes")
        if raw is None:
            raise self.fail(None, "no routes: add at least one [[routes]] table")
        if isinstance(raw, dict):
            raise self.fail("routes", "expected an array of tables ([[routes]]), got a single table ([routes])")
        if not isinstance(raw, list) or not raw:
            raise self.fail("routes", f"expected an array of tables ([[routes]]), got {_type_name(raw) if raw != [] else 'an empty array'}")
        out = []
        seen: dict[str, int] = {}
        for index, item in enumerate(raw):
            self.where.route = f"routes[{index}]"
            if not isinstance(item, dict):
                raise self.fail(None, f"expected a table ([[routes]]), got {_type_name(item)}")
            name = item.get("name")
            if isinstance(name, str) and name.strip() and not _is_control(name):
                self.where.route = f'route "{name.strip()}"'
            out.append(self.route(item, monitor))
            name = out[-1][0]["name"]
            if name in seen:
                raise self.fail("name", f"duplicate route name (also routes[{seen[name]}]); route names must be unique")
            seen[name] = index
        self.where.route = None
        return out

    def route(self, table: Mapping[str, Any], monitor: MonitorSettings) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        self.check_keys(table, ROUTE_KEYS, "")
        fields: dict[str, Any] = {
            "name": self.string(table, "name", "name", required=True).strip(),
        }
        if len(fields["name"]) > MAX_ROUTE_NAME_CHARS:
            raise self.fail("name", f"is {len(fields['name'])} characters long (at most {MAX_ROUTE_NAME_CHARS})")
        fields |= {
            "mail_from": self.address(table, "from"),
            "rcpt_to": self.address(table, "to"),
            "interval_s": self.duration(table, "interval", "interval", monitor.interval_s),
            "timeout_s": self.duration(table, "timeout", "timeout", monitor.timeout_s),
            "jitter_s": self.duration(table, "jitter", "jitter", "2s", allow_zero=True),
            "require_tls": self.boolean(table, "require_tls", "require_tls", False),
        }
        if "subject" in table:
            fields["subject"] = self.string(table, "subject", "subject")
        if "body" in table:
            fields["body"] = self.string(table, "body", "body", multiline=True)
        if "attachment_size" in table:
            try:
                fields["attachment_bytes"] = parse_size(table["attachment_size"])
            except ValueError as exc:
                raise self.fail("attachment_size", str(exc)) from None
        if "jitter" not in table:  # the default never clashes with a short interval
            fields["jitter_s"] = min(fields["jitter_s"], fields["interval_s"] / 10)
        if fields["jitter_s"] >= fields["interval_s"]:
            raise self.fail("jitter", f"must be less than the interval ({format_duration(fields['interval_s'])})")

        for key in ("smtp", "imap"):
            if key not in table:
                raise self.fail(None, f"missing required table [routes.{key}]")
        smtp = self.server(self.table(table, "smtp", "smtp", "[routes.smtp]"), "smtp")
        imap = self.server(self.table(table, "imap", "imap", "[routes.imap]"), "imap")
        if "bounces" in table:  # the sender's mailbox: IMAP settings, searched read-only for DSNs
            fields["_bounces"] = self.server(self.table(table, "bounces", "bounces", "[routes.bounces]"), "imap", "bounces")

        lab = _is_loopback(smtp["host"]) and _is_loopback(imap["host"])
        fields["warn_s"] = self.duration(table, "warn", "warn", LOOPBACK_WARN_S if lab else DEFAULT_WARN_S)
        fields["crit_s"] = self.duration(table, "crit", "crit", LOOPBACK_CRIT_S if lab else DEFAULT_CRIT_S)
        if fields["warn_s"] > fields["crit_s"]:
            warn, crit = format_duration(fields["warn_s"]), format_duration(fields["crit_s"])
            if "warn" in table:
                raise self.fail("warn", f"must not be more than crit ({crit}{'' if 'crit' in table else ', the default'}), got {_describe(table['warn'])}")
            raise self.fail("crit", f"must not be less than warn ({warn}, the default), got {_describe(table['crit'])}")
        fields["_alerts"] = self.alert_rules(table.get("alerts"), "alerts", route=fields["name"])
        return fields, smtp, imap

    def address(self, table: Mapping[str, Any], key: str) -> str:
        value = self.string(table, key, key, required=True).strip()
        local, at, domain = value.rpartition("@")
        if not at or not local or not domain or any(c.isspace() or c in "<>,;" for c in value):
            raise self.fail(key, f'expected a bare address such as "probe@example.com", got {_describe(value)}')
        return value

    def server(self, table: Mapping[str, Any], kind: str, name: str | None = None) -> dict[str, Any]:
        """An SMTP or IMAP server table; ``name`` is its table's name in messages (default: kind)."""
        allowed = SERVER_KEYS + (IMAP_ONLY_KEYS if kind == "imap" else ())
        elsewhere = {k: "[routes.imap]" for k in IMAP_ONLY_KEYS} if kind == "smtp" else None
        label = name or kind
        self.check_keys(table, allowed, label, elsewhere)
        k = lambda key: f"{label}.{key}"  # noqa: E731

        host = self.string(table, "host", k("host"), required=True).strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host or any(c.isspace() for c in host) or "/" in host:
            raise self.fail(k("host"), f"expected a host name or IP address, got {_describe(table['host'])}")

        security_raw = table.get("security", DEFAULT_SECURITY[kind].value)
        choices = [s.value for s in Security]
        if not isinstance(security_raw, str) or security_raw.lower() not in choices:
            close = difflib.get_close_matches(security_raw, choices, n=1) if isinstance(security_raw, str) else []
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise self.fail(k("security"), f'expected one of "none", "starttls", "tls", got {_describe(security_raw)}{hint}')
        security = Security(security_raw.lower())

        defaults = DEFAULT_SMTP_PORTS if kind == "smtp" else DEFAULT_IMAP_PORTS
        port = table.get("port", defaults[security])
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise self.fail(k("port"), f"expected an integer 1-65535, got {_describe(port)}")

        username = self.string(table, "username", k("username"))
        if username is not None and not username.strip():
            raise self.fail(k("username"), "must not be empty (leave it out for no login)")

        auth = self.choice(table, "auth", k("auth"), AUTH_METHODS, "password")
        oauth2 = self.oauth2(table, label, auth, username)
        sources = [key for key in PASSWORD_KEYS if key in table]
        if sources and auth != "password":
            raise self.fail(k(sources[0]), f'not used with auth = "{auth}" (the login uses an OAuth2 token: '
                                           f'token_command or [routes.{label}.oauth2])')
        if len(sources) > 1:
            raise self.fail(k(sources[1]), f"give only one of {', '.join(sources)}")
        spec = None
        if sources:
            source = sources[0]
            value = self.string(table, source, k(source), secret=True)
            if source != "password" and not value.strip():
                raise self.fail(k(source), "must not be empty")
            if source == "password_env" and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
                raise self.fail(k(source), f"expected an environment variable name, got {_describe(value)}")
            if username is None:
                raise self.fail(k(source), f'a password is given but no {k("username")}')
            spec = _PasswordSpec(source, value)
        elif username is not None and auth == "password":
            raise self.fail(k("password"), f"{k('username')} is set but no password: give one of password_env, password_command or password")

        fields: dict[str, Any] = {
            "host": host,
            "port": port,
            "security": security,
            "username": username,
            "password": spec,
            "verify_tls": self.boolean(table, "verify_tls", k("verify_tls"), True),
            "ca_file": self.path_value(table, "ca_file", k("ca_file")),
            "timeout_s": self.duration(table, "timeout", k("timeout"), "30s"),
            "auth": auth,
            "oauth2": oauth2,
        }
        if fields["ca_file"] is not None and not os.path.isfile(fields["ca_file"]):
            raise self.fail(k("ca_file"), f"no such file: {fields['ca_file']}")
        if fields["ca_file"] is not None:
            try:
                ssl.create_default_context(cafile=fields["ca_file"])
            except (ssl.SSLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or "unreadable"
                raise self.fail(k("ca_file"), f"not a PEM certificate bundle: {fields['ca_file']} ({reason})") from None
        if kind == "imap":
            fields["folders"] = self.folders(table, "folders", k("folders"), allow_empty=False) or ("INBOX",)
            fields["junk_folders"] = self.folders(table, "junk_folders", k("junk_folders"), allow_empty=True)
            overlap = set(fields["folders"]) & set(fields["junk_folders"] or ())
            if overlap:
                raise self.fail(k("junk_folders"), f'"{sorted(overlap)[0]}" is also in {k("folders")}; a folder is either watched for delivery or junk')
            fields["poll_interval_s"] = self.duration(table, "poll_interval", k("poll_interval"), "10s")
            fields["idle_renew_s"] = self.duration(table, "idle_renew", k("idle_renew"), "10m")
            if fields["idle_renew_s"] >= IDLE_LIMIT_S:
                raise self.fail(k("idle_renew"), f"must be less than 29m (servers may drop an IDLE after 30 minutes), got {_describe(table['idle_renew'])}")
        return fields

    def oauth2(self, table: Mapping[str, Any], kind: str, auth: str, username: str | None) -> dict[str, Any] | None:
        """The token source of an OAuth2 login (secrets still as specs), or None for passwords."""
        k = lambda key: f"{kind}.{key}"  # noqa: E731
        given = [key for key in ("token_command", "oauth2") if key in table]
        if auth == "password":
            if given:
                raise self.fail(k(given[0]), f'only used with auth = "xoauth2" or "oauthbearer" (add auth = "xoauth2" to [routes.{kind}])')
            return None
        if username is None:
            raise self.fail(k("username"), f'auth = "{auth}" needs the account to log in as (username = "user@example.com")')
        if not given:
            raise self.fail(k("auth"), f'auth = "{auth}" needs a token: token_command = "..." or a [routes.{kind}.oauth2] table')
        if len(given) > 1:
            raise self.fail(k("oauth2"), "give only one of token_command, [oauth2]")
        if given[0] == "token_command":
            command = self.string(table, "token_command", k("token_command"))
            if not command.strip():
                raise self.fail(k("token_command"), "must not be empty")
            return {"token_command": command, "base_dir": str(self.base)}
        raw = self.table(table, "oauth2", k("oauth2"), f"[routes.{kind}.oauth2]")
        p = lambda key: f"{kind}.oauth2.{key}"  # noqa: E731
        self.check_keys(raw, OAUTH2_KEYS, k("oauth2"))
        url = self.string(raw, "token_url", p("token_url"), required=True).strip()
        if re.match(r"[a-z]+://[^/?#]*@", url, re.I):  # never echo it: the part before @ may be a password
            raise self.fail(p("token_url"), "must not carry a user name or password (user:pass@); the client "
                                            "secret goes in client_secret_env or client_secret_command")
        m = re.fullmatch(r"(https?)://(\[[^\]]+\]|[^/:\s]+)(?::\d+)?(?:/\S*)?", url)
        if not m:
            raise self.fail(p("token_url"), f'expected a URL such as "https://login.microsoftonline.com/TENANT/oauth2/v2.0/token", got {_describe(url)}')
        if m.group(1) == "http" and not _is_loopback(m.group(2).strip("[]")):
            raise self.fail(p("token_url"), f"must be https:// (the client secret and tokens travel in it), got {_describe(url)}")
        flow = self.choice(raw, "flow", p("flow"), OAUTH2_FLOWS, "refresh_token")
        out: dict[str, Any] = {
            "token_url": url,
            "flow": flow,
            "client_id": self.string(raw, "client_id", p("client_id"), required=True).strip(),
            "scope": (self.string(raw, "scope", p("scope")) or "").strip() or None,
            "verify_tls": self.boolean(raw, "verify_tls", p("verify_tls"), True),
        }
        for secret in ("client_secret", "refresh_token"):
            sources = [f"{secret}_env", f"{secret}_command"]
            present = [s for s in sources if s in raw]
            if len(present) > 1:
                raise self.fail(p(present[1]), f"give only one of {', '.join(present)}")
            spec = None
            if present:
                value = self.string(raw, present[0], p(present[0]), secret=True)
                if not value.strip():
                    raise self.fail(p(present[0]), "must not be empty")
                if present[0].endswith("_env") and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
                    raise self.fail(p(present[0]), f"expected an environment variable name, got {_describe(value)}")
                spec = _PasswordSpec("password_env" if present[0].endswith("_env") else "password_command", value)
                out[f"_{secret}_key"] = p(present[0])
            out[secret] = spec
        if flow == "refresh_token" and out["refresh_token"] is None:
            raise self.fail(k("oauth2"), 'flow = "refresh_token" needs refresh_token_env or refresh_token_command')
        if flow == "client_credentials":
            if out["client_secret"] is None:
                raise self.fail(k("oauth2"), 'flow = "client_credentials" needs client_secret_env or client_secret_command')
            if out["refresh_token"] is not None:
                raise self.fail(p(out["_refresh_token_key"].rsplit(".", 1)[1]), 'not used with flow = "client_credentials"')
        return out

    def oauth2_settings(self, raw: dict[str, Any] | None, cache: dict[_PasswordSpec, Secret]) -> OAuth2Settings | None:
        if raw is None:
            return None
        fields = {key: value for key, value in raw.items() if not key.startswith("_")}
        for secret in ("client_secret", "refresh_token"):
            if fields.get(secret) is not None:
                fields[secret] = self.secret(fields[secret], raw[f"_{secret}_key"], cache)
        return OAuth2Settings(**fields)

    def folders(self, table: Mapping[str, Any], key: str, name: str, allow_empty: bool) -> tuple[str, ...] | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, list):
            raise self.fail(name, f'expected an array of folder names such as ["INBOX"], got {_describe(value)}')
        if not value and not allow_empty:
            raise self.fail(name, 'must name at least one folder, e.g. ["INBOX"]')
        out: list[str] = []
        for i, folder in enumerate(value):
            if not isinstance(folder, str) or not folder.strip():
                raise self.fail(f"{name}[{i}]", f"expected a folder name, got {_describe(folder)}")
            if _is_control(folder):
                raise self.fail(f"{name}[{i}]", "must not contain control characters")
            if folder in out:
                raise self.fail(f"{name}[{i}]", f'"{folder}" is listed twice')
            out.append(folder)
        return tuple(out)

    # ---- alerts, dns, notify ------------------------------------------------

    def choice(self, table: Mapping[str, Any], key: str, name: str, choices: tuple[str, ...],
               default: str | None) -> str | None:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, str) or value not in choices:
            close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise self.fail(name, f"expected one of {', '.join(chr(34) + c + chr(34) for c in choices)}, got {_describe(value)}{hint}")
        return value

    def integer(self, table: Mapping[str, Any], key: str, name: str, default: int, low: int = 1) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(name, f"expected an integer of {low} or more, got {_describe(value)}")
        return value

    def strings(self, table: Mapping[str, Any], key: str, name: str) -> tuple[str, ...] | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and not _is_control(v) for v in value):
            raise self.fail(name, f"expected an array of strings, got {_describe(value)}")
        return tuple(v.strip() for v in value)

    def alert_rules(self, raw: object, prefix: str, route: str | None = None) -> list[AlertRule]:
        if raw is None:
            return []
        if isinstance(raw, dict):  # [routes.alerts] / [alerts]: a single rule
            raw = [raw]
        if not isinstance(raw, list):
            raise self.fail(prefix, f"expected an array of tables ([[{prefix}]]), got {_type_name(raw)}")
        rules = []
        for i, item in enumerate(raw):
            name = f"{prefix}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(name, f"expected a table, got {_type_name(item)}")
            rules.append(self.alert_rule(item, name, route))
        return rules

    def alert_rule(self, table: Mapping[str, Any], prefix: str, route: str | None) -> AlertRule:
        self.check_keys(table, ALERT_KEYS, prefix)
        k = lambda key: f"{prefix}.{key}"  # noqa: E731
        if "kind" not in table:
            raise self.fail(prefix, f'missing required key "kind" (one of {", ".join(ALERT_KINDS)})')
        kind = self.choice(table, "kind", k("kind"), ALERT_KINDS, None)
        name = self.string(table, "name", k("name"), default=kind).strip()
        if not name or "|" in name:
            raise self.fail(k("name"), "must not be empty or contain |")
        fields: dict[str, Any] = {"name": name, "kind": kind}
        fields["severity"] = self.choice(table, "severity", k("severity"), SEVERITIES, None)
        if route is not None:
            if "routes" in table:
                raise self.fail(k("routes"), "a route's own rule applies to that route only; leave routes out")
            fields["routes"] = (route,)
        else:
            fields["routes"] = self.strings(table, "routes", k("routes")) or ()
        fields["metric"] = self.choice(table, "metric", k("metric"), ("total", "transit"), "total")
        for key in ("warn", "crit"):
            if key in table:
                fields[f"{key}_s"] = self.duration(table, key, k(key), 0)
        if fields.get("warn_s") and fields.get("crit_s") and fields["warn_s"] > fields["crit_s"]:
            raise self.fail(k("warn"), f"must not be more than crit ({format_duration(fields['crit_s'])})")
        fields["n"] = self.integer(table, "n", k("n"), 1)
        fields["m"] = self.integer(table, "m", k("m"), 1)
        if fields["m"] > fields["n"] and kind != "loss_ratio":
            raise self.fail(k("m"), f"must not be more than n ({fields['n']}): m of the last n probes")
        fields["count"] = self.integer(table, "count", k("count"), 3)
        fields["clear"] = self.integer(table, "clear", k("clear"), 1)
        fields["window_s"] = self.duration(table, "window", k("window"), "1h")
        ratio = table.get("ratio", 0.2)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            raise self.fail(k("ratio"), f"expected a number from 0 to below 1 (0.2 = 20%), got {_describe(ratio)}")
        fields["ratio"] = float(ratio)
        methods = self.strings(table, "methods", k("methods"))
        if methods is not None:
            for i, m in enumerate(methods):
                if m.lower() not in ("spf", "dkim", "dmarc"):
                    raise self.fail(f"{k('methods')}[{i}]", f'expected "spf", "dkim" or "dmarc", got {_describe(m)}')
            fields["methods"] = tuple(m.lower() for m in methods)
        if kind == "dns" and route is not None:
            raise self.fail(k("kind"), "dns rules belong in the top-level [[alerts]] (they watch [dns] domains)")
        if kind in DMARC_ALERT_KINDS:
            self.dmarc_rule(table, prefix, fields, route)
        else:
            for key in ("domains", "pass_rate", "volume"):
                if key in table:
                    raise self.fail(k(key), f'only dmarc_* rules take "{key}"')
        return AlertRule(**fields)

    def dmarc_rule(self, table: Mapping[str, Any], prefix: str, fields: dict[str, Any], route: str | None) -> None:
        k = lambda key: f"{prefix}.{key}"  # noqa: E731
        if route is not None:
            raise self.fail(k("kind"), "dmarc rules belong in the top-level [[alerts]] (they watch [dmarc] reports)")
        if "routes" in table:
            raise self.fail(k("routes"), "dmarc rules watch domains, not routes: use domains = [...]")
        fields["domains"] = tuple(d.lower().rstrip(".") for d in self.strings(table, "domains", k("domains")) or ())
        rate = table.get("pass_rate", 0.9)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise self.fail(k("pass_rate"), f"expected a number above 0 up to 1 (0.9 = 90%), got {_describe(rate)}")
        fields["pass_rate"] = float(rate)
        if "volume" in table:
            fields["volume"] = self.integer(table, "volume", k("volume"), 0, low=0)
        if "window" not in table:  # aggregate reports cover a day each: a week by default
            fields["window_s"] = 7 * 86400.0

    def dmarc(self, doc: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if "dmarc" not in doc:
            return None
        table = self.table(doc, "dmarc", "dmarc", "[dmarc]")
        self.check_keys(table, DMARC_KEYS, "dmarc")
        if "imap" not in table:
            raise self.fail("dmarc", "missing required table [dmarc.imap] (the mailbox the reports arrive in)")
        imap_table = self.table(table, "imap", "dmarc.imap", "[dmarc.imap]")
        for key in ("folders", "junk_folders"):
            if key in imap_table:
                raise self.fail(f"dmarc.imap.{key}", 'the reports folder is [dmarc] folder = "..."')
        self.where.route = "[dmarc]"
        imap = self.server(imap_table, "imap")
        self.where.route = None
        folder = self.string(table, "folder", "dmarc.folder", default="INBOX")
        if not folder.strip():
            raise self.fail("dmarc.folder", "must not be empty")
        action = self.string(table, "on_import", "dmarc.on_import", default="remember").strip()
        move_to = None
        if action.startswith("move:"):
            move_to = action[5:].strip()
            if not move_to:
                raise self.fail("dmarc.on_import", 'expected "move:FOLDER" with a folder name, got "move:"')
            if move_to == folder:
                raise self.fail("dmarc.on_import", f'moves reports into the folder they are read from ("{folder}")')
            action = "move"
        elif action not in ("remember", "seen"):
            close = difflib.get_close_matches(action, ("remember", "seen", "move:"), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise self.fail("dmarc.on_import", f'expected "remember", "seen" or "move:FOLDER", got {_describe(action)}{hint}')
        imap["folders"] = (folder,)
        imap["junk_folders"] = ()
        fields = {
            "folder": folder, "on_import": action, "move_to": move_to,
            "interval_s": self.duration(table, "interval", "dmarc.interval", "15m"),
        }
        return fields, imap

    def dns(self, doc: Mapping[str, Any]) -> DnsSettings:
        table = self.table(doc, "dns", "dns", "[dns]")
        self.check_keys(table, DNS_KEYS, "dns")
        domains = self.strings(table, "domains", "dns.domains") or ()
        records = self.strings(table, "records", "dns.records")
        if records is not None:
            for i, r in enumerate(records):
                if r.upper() not in DNS_RECORDS:
                    close = difflib.get_close_matches(r.upper(), DNS_RECORDS, n=1)
                    hint = f' (did you mean "{close[0]}"?)' if close else f" (one of {', '.join(DNS_RECORDS)})"
                    raise self.fail(f"dns.records[{i}]", f"unknown record {_describe(r)}{hint}")
            records = tuple(r.upper() for r in records)
        servers = []
        for i, ns in enumerate(self.strings(table, "nameservers", "dns.nameservers") or ()):
            host, port = ns, 53
            m = re.fullmatch(r"\[?([^\]]+?)\]?:(\d+)", ns) if ns.count(":") == 1 or ns.startswith("[") else None
            if m:
                host, port = m.group(1), int(m.group(2))
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise self.fail(f"dns.nameservers[{i}]", f'expected an IP address with an optional port such as "127.0.0.1:5353", got {_describe(ns)}') from None
            if not 1 <= port <= 65535:
                raise self.fail(f"dns.nameservers[{i}]", f"port must be 1-65535, got {port}")
            servers.append((host, port))
        fields: dict[str, Any] = {"domains": domains, "nameservers": tuple(servers)}
        if records is not None:
            fields["records"] = records
        fields["interval_s"] = self.duration(table, "interval", "dns.interval", "1h")
        fields["timeout_s"] = self.duration(table, "timeout", "dns.timeout", "5s")
        return DnsSettings(**fields)

    def notifiers(self, doc: Mapping[str, Any]) -> list[NotifierSettings]:
        raw = doc.get("notify")
        if raw is None:
            return []
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list):
            raise self.fail("notify", f"expected an array of tables ([[notify]]), got {_type_name(raw)}")
        out = []
        for i, table in enumerate(raw):
            p = f"notify[{i}]"
            if not isinstance(table, dict):
                raise self.fail(p, f"expected a table, got {_type_name(table)}")
            self.check_keys(table, NOTIFY_KEYS, p)
            if "kind" not in table:
                raise self.fail(p, f'missing required key "kind" (one of {", ".join(NOTIFY_KINDS)})')
            kind = self.choice(table, "kind", f"{p}.kind", NOTIFY_KINDS, None)
            fields: dict[str, Any] = {
                "kind": kind,
                "min_severity": self.choice(table, "min_severity", f"{p}.min_severity", SEVERITIES, "warn"),
                "command": self.string(table, "command", f"{p}.command"),
                "url": self.string(table, "url", f"{p}.url"),
                "format": self.choice(table, "format", f"{p}.format", WEBHOOK_FORMATS, "json"),
                "timeout_s": self.duration(table, "timeout", f"{p}.timeout", "10s"),
                "retries": self.integer(table, "retries", f"{p}.retries", 2, low=0),
                "on_resolve": self.boolean(table, "on_resolve", f"{p}.on_resolve", True),
            }
            if kind == "command" and not (fields["command"] or "").strip():
                raise self.fail(p, 'a command notifier needs "command"')
            if kind == "webhook":
                url = fields["url"] or ""
                if not re.match(r"https?://[^/\s]+", url):
                    raise self.fail(f"{p}.url" if url else p, f'a webhook needs "url" = "http(s)://...", got {_describe(url) if url else "none"}')
            out.append(NotifierSettings(**fields))
        return out


    # ---- passwords ----------------------------------------------------------

    def secret(self, spec: _PasswordSpec | None, name: str, cache: dict[_PasswordSpec, Secret]) -> Secret | None:
        if spec is None:
            return None
        if spec not in cache:
            cache[spec] = self._resolve(spec, name)
        return cache[spec]

    def _resolve(self, spec: _PasswordSpec, name: str) -> Secret:
        secret = self._resolve_source(spec, name)
        if len(secret.value) > MAX_PASSWORD_CHARS:
            raise self.fail(name, f"the password from {secret.source} is {len(secret.value)} characters long "
                                  f"(at most {MAX_PASSWORD_CHARS})")
        return secret

    def _resolve_source(self, spec: _PasswordSpec, name: str) -> Secret:
        if spec.kind == "password":
            if not spec.value:
                raise self.fail(name, "is empty")
            return Secret(spec.value, "literal")
        if spec.kind == "password_env":
            value = os.environ.get(spec.value)
            if value is None:
                raise self.fail(name, f"environment variable {spec.value} is not set")
            if not value:
                raise self.fail(name, f"environment variable {spec.value} is empty")
            return Secret(value, f"env {spec.value}")
        return Secret(self._run_command(spec.value, name), "command")

    def _run_command(self, command: str, name: str) -> str:
        """First line of the command's stdout, stripped.  Its stderr is not shown:
        only the exit code is reported, so nothing it prints can leak."""
        try:
            proc = subprocess.Popen(
                ["sh", "-c", command],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=self.base, start_new_session=True,
            )
        except OSError as exc:
            raise self.fail(name, f"could not run the command ({exc.strerror or type(exc).__name__})") from None
        try:
            out, _err = proc.communicate(timeout=PASSWORD_COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # kill the whole group: a grandchild holding stdout open would block communicate()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            raise self.fail(name, f"the command did not finish within {format_duration(PASSWORD_COMMAND_TIMEOUT_S)}") from None
        if proc.returncode != 0:
            hint = {126: " (not executable)", 127: " (command not found)"}.get(proc.returncode, "")
            if proc.returncode < 0:
                raise self.fail(name, f"the command was killed by signal {-proc.returncode}")
            raise self.fail(name, f"the command failed with exit code {proc.returncode}{hint}")
        lines = out.decode("utf-8", errors="replace").splitlines()
        value = lines[0].strip() if lines else ""
        if not value:
            raise self.fail(name, "the command printed nothing on its first line")
        return value


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{shown}: no such file", code=2) from None
    except IsADirectoryError:
        raise UserError(f"{shown}: is a directory, not a config file", code=2) from None
    except PermissionError:
        raise UserError(f"{shown}: cannot read: permission denied", code=2) from None
    except OSError as exc:
        raise UserError(f"{shown}: cannot read: {exc.strerror or exc}", code=2) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(f"{shown}: line {line}: not valid TOML: the file is not UTF-8 text", code=2) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
        if m:
            what = msg[: m.start()]
            raise UserError(f"{shown}: line {m.group(1)}: not valid TOML: {what} (column {m.group(2)})", code=2) from None
        m = re.search(r"\s*\(at end of document\)$", msg)
        if m:
            msg = msg[: m.start()]
            # tomllib reports some errors (a repeated key) only at the end
            raise UserError(f"{shown}: line {text.count(chr(10)) + 1}: not valid TOML: {msg} (at the end of the file)", code=2) from None
        raise UserError(f"{shown}: not valid TOML: {msg}", code=2) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and resolve the config file at ``path``.

    Relative paths in it are taken relative to the file and stored absolute;
    ``password_env`` and ``password_command`` are resolved now, so the result
    holds every password as a :class:`Secret`.  Raises ``UserError`` (code 2)
    with a one-line message on any problem.  See also :func:`config_warnings`.
    """
    shown = os.fspath(path)
    file = Path(os.path.expanduser(shown))
    doc = _read_toml(file, shown)
    reader = _Reader(file.resolve(), shown)

    for key in doc:
        if key in RESERVED_TOP_KEYS:
            raise reader.fail(None, f"[{key}] is not supported yet by this version of flowtui; remove it")
    reader.check_keys(doc, TOP_KEYS, "")
    monitor = reader.monitor(doc)
    parsed = reader.routes(doc, monitor)
    route_names = {fields["name"] for fields, _, _ in parsed}
    rules = reader.alert_rules(doc.get("alerts"), "alerts")
    for i, rule in enumerate(rules):
        for name in rule.routes:
            if name not in route_names:
                close = difflib.get_close_matches(name, sorted(route_names), n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                raise reader.fail(f"alerts[{i}].routes", f'no route named "{name}"{hint}')
    for fields, _, _ in parsed:
        reader.where.route = f'route "{fields["name"]}"'
        rules += fields.pop("_alerts")
    reader.where.route = None
    seen_rules: set[str] = set()
    for rule in rules:
        for target in rule.routes or ("",):
            if (rule.name, target) in seen_rules:
                raise reader.fail("alerts", f'two rules named "{rule.name}"{" for route " + chr(34) + target + chr(34) if target else ""}; give one a name = "..."')
            seen_rules.add((rule.name, target))
    if not rules and monitor_table_default_alerts(doc):
        from flowtui.core.alerts import default_rules

        rules = list(default_rules())
    dns = reader.dns(doc)
    if dns.domains and not any(r.kind == "dns" for r in rules):
        rules.append(AlertRule(name="dns", kind="dns"))  # [dns] domains are watched for a reason
    dmarc_raw = reader.dmarc(doc)
    if dmarc_raw is not None and not any(r.kind in DMARC_ALERT_KINDS for r in rules):
        rules.append(AlertRule(name="dmarc_pass_rate", kind="dmarc_pass_rate", window_s=7 * 86400.0))
    notify = reader.notifiers(doc)
    ui = reader.ui(doc)

    # The whole file is valid: only now look passwords up (and run commands).
    cache: dict[_PasswordSpec, Secret] = {}
    routes = []
    for fields, smtp, imap in parsed:
        reader.where.route = f'route "{fields["name"]}"'
        smtp["password"] = reader.secret(smtp["password"], f"smtp.{smtp['password'].kind}" if smtp["password"] else "", cache)
        imap["password"] = reader.secret(imap["password"], f"imap.{imap['password'].kind}" if imap["password"] else "", cache)
        smtp["oauth2"] = reader.oauth2_settings(smtp["oauth2"], cache)
        imap["oauth2"] = reader.oauth2_settings(imap["oauth2"], cache)
        bounces = fields.pop("_bounces", None)
        if bounces is not None:
            kind = bounces["password"].kind if bounces["password"] else ""
            bounces["password"] = reader.secret(bounces["password"], f"bounces.{kind}" if kind else "", cache)
            bounces["oauth2"] = reader.oauth2_settings(bounces["oauth2"], cache)
            fields["bounces"] = ImapSettings(**bounces)
        routes.append(Route(smtp=ServerSettings(**smtp), imap=ImapSettings(**imap), **fields))
    dmarc = None
    if dmarc_raw is not None:
        fields, imap = dmarc_raw
        reader.where.route = "[dmarc]"
        imap["password"] = reader.secret(imap["password"], f"imap.{imap['password'].kind}" if imap["password"] else "", cache)
        imap["oauth2"] = reader.oauth2_settings(imap["oauth2"], cache)
        reader.where.route = None
        dmarc = DmarcSettings(imap=ImapSettings(**imap), **fields)
    return Config(
        path=str(file.resolve()), monitor=monitor, routes=tuple(routes),
        alerts=tuple(rules), dns=dns, notify=tuple(notify), ui=ui, dmarc=dmarc,
    )


def monitor_table_default_alerts(doc: Mapping[str, Any]) -> bool:
    """``[monitor] default_alerts`` (true unless set false): lost, send_failed, latency."""
    return doc.get("monitor", {}).get("default_alerts", True) is not False


def config_warnings(config: Config) -> list[str]:
    """Things in a valid config worth a warning, one line each (file mode is read now)."""
    shown = config.path
    warnings: list[str] = []
    servers = [(f'{shown}: route "{route.name}": {kind}', server) for route in config.routes
               for kind, server in (("smtp", route.smtp), ("imap", route.imap), ("bounces", route.bounces))
               if server is not None]
    if config.dmarc is not None:
        servers.append((f"{shown}: [dmarc]: imap", config.dmarc.imap))
    literal = any(server.password is not None and server.password.source == "literal" for _, server in servers)
    if literal:
        try:
            mode = stat.S_IMODE(os.stat(config.path).st_mode)
        except OSError:
            mode = 0
        if mode & 0o077:
            warnings.append(
                f"{shown}: holds a literal password but is readable by group or others "
                f"(mode {mode:04o}); run 'chmod 600' on it, or use password_env / password_command"
            )
    for where, server in servers:
        if server.security is not Security.NONE and not server.verify_tls:
            warnings.append(f"{where}.verify_tls: certificate verification is off; anyone on the path can read the password")
        if server.security is Security.NONE and server.password is not None and not _is_loopback(server.host):
            warnings.append(f"{where}.security: the password is sent unencrypted to {server.host}")
        if server.security is Security.NONE and server.oauth2 is not None and not _is_loopback(server.host):
            warnings.append(f"{where}.security: the OAuth2 access token is sent unencrypted to {server.host}")
    return warnings


def parse_alert_rules(raw: object, shown: str = "<rules>") -> tuple[AlertRule, ...]:
    """Alert rules from a list of ``[[alerts]]`` tables (scenario files, tools); none: the defaults."""
    from flowtui.core.alerts import default_rules

    rules = _Reader(Path(shown), shown).alert_rules(raw, "alerts")
    return tuple(rules) or default_rules()
