"""Config loading: one-line errors naming file, route and key; defaults; paths; passwords."""

from __future__ import annotations

import copy
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from flowtui.core import config as config_mod
from flowtui.core.config import config_warnings, format_duration, load_config, parse_duration, parse_size
from flowtui.core.errors import UserError
from flowtui.core.model import ImapSettings, Security

ROOT = Path(__file__).resolve().parents[2]

SMTP_PW = "s3cret-smtp-PW"
IMAP_PW = "s3cret-imap-PW"
IMAP_ENV = "FLOWTUI_TEST_IMAP_PW"
SECRETS = (SMTP_PW, IMAP_PW)

BASE: dict[str, Any] = {
    "monitor": {"database": "flowtui.db"},
    "routes": [
        {
            "name": "hq",
            "from": "probe@example.com",
            "to": "probe-rx@example.net",
            "smtp": {"host": "smtp.example.com", "username": "probe@example.com", "password": SMTP_PW},
            "imap": {"host": "imap.example.net", "username": "probe-rx@example.net", "password_env": IMAP_ENV},
        }
    ],
}

DELETE = object()
_PEM: list[str] = []


def _cert_pem() -> str:
    """A real self-signed certificate (ca_file is loaded, not only checked to exist)."""
    if not _PEM:
        import tempfile

        from flowtui.lab.common import make_certificate

        with tempfile.TemporaryDirectory() as d:
            made = make_certificate(Path(d))
            assert made is not None, "openssl is needed for this test (.ci/run installs it)"
            _PEM.append(made[0].read_text())
    return _PEM[0]


def _doc(mods: dict[str, Any]) -> dict[str, Any]:
    """BASE with dotted paths ("routes.0.smtp.port") set, or removed with DELETE."""
    doc = copy.deepcopy(BASE)
    for dotted, value in mods.items():
        *parents, last = dotted.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return doc


def _write(tmp_path: Path, doc: dict[str, Any] | str, name: str = "config.toml", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else tomli_w.dumps(doc))
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IMAP_ENV, IMAP_PW)


def _error(path: Path) -> str:
    with pytest.raises(UserError) as info:
        load_config(path)
    assert info.value.code == 2
    message = str(info.value)
    assert "\n" not in message
    for secret in SECRETS:
        assert secret not in message
    return message


# (id, modifications of BASE, route label or None, key named, expected text)
CASES: list[tuple[str, dict[str, Any], str | None, str, str]] = [
    ("port-string", {"routes.0.smtp.port": "abc"}, 'route "hq"', "smtp.port", 'expected an integer 1-65535, got "abc"'),
    ("port-zero", {"routes.0.smtp.port": 0}, 'route "hq"', "smtp.port", "expected an integer 1-65535, got 0"),
    ("port-high", {"routes.0.imap.port": 70000}, 'route "hq"', "imap.port", "got 70000"),
    ("port-bool", {"routes.0.imap.port": True}, 'route "hq"', "imap.port", "got true"),
    ("name-missing", {"routes.0.name": DELETE, "routes.0.smtp.port": "x"}, "routes[0]", "name", 'missing required key "name"'),
    ("name-empty", {"routes.0.name": "  "}, "routes[0]", "name", "must not be empty"),
    ("name-linebreak", {"routes.0.name": "a\nb"}, "routes[0]", "name", "control characters"),
    ("interval-plain-string", {"routes.0.interval": "30"}, 'route "hq"', "interval", 'add a unit'),
    ("interval-plain-number", {"routes.0.interval": 30}, 'route "hq"', "interval", "plain number 30"),
    ("interval-words", {"routes.0.interval": "5 minutes"}, 'route "hq"', "interval", "expected a duration"),
    ("interval-zero", {"routes.0.interval": "0s"}, 'route "hq"', "interval", "must be more than 0"),
    ("timeout-negative", {"routes.0.timeout": "-5s"}, 'route "hq"', "timeout", "expected a duration"),
    ("monitor-timeout-zero", {"monitor.timeout": "0m"}, None, "monitor.timeout", "must be more than 0"),
    ("monitor-interval-bad", {"monitor.interval": "1x"}, None, "monitor.interval", "expected a duration"),
    ("monitor-unknown", {"monitor.intervall": "60s"}, None, "monitor", 'unknown key "intervall" (did you mean "interval"?)'),
    ("monitor-not-table", {"monitor": "x"}, None, "monitor", "expected a table"),
    ("route-unknown", {"routes.0.intervall": "60s"}, 'route "hq"', "intervall", 'unknown key "intervall" (did you mean "interval"?)'),
    ("smtp-unknown", {"routes.0.smtp.prot": 25}, 'route "hq"', "smtp", 'unknown key "prot" (did you mean "port"?)'),
    ("smtp-imap-only", {"routes.0.smtp.folders": ["INBOX"]}, 'route "hq"', "smtp", 'key "folders" is only valid in [routes.imap]'),
    ("security-bad", {"routes.0.smtp.security": "ssl"}, 'route "hq"', "smtp.security", 'expected one of "none", "starttls", "tls", got "ssl"'),
    ("security-typo", {"routes.0.imap.security": "starttsl"}, 'route "hq"', "imap.security", 'did you mean "starttls"?'),
    ("folders-empty", {"routes.0.imap.folders": []}, 'route "hq"', "imap.folders", "must name at least one folder"),
    ("folders-string", {"routes.0.imap.folders": "INBOX"}, 'route "hq"', "imap.folders", "expected an array"),
    ("folders-twice", {"routes.0.imap.folders": ["INBOX", "INBOX"]}, 'route "hq"', "imap.folders[1]", "listed twice"),
    ("folders-not-string", {"routes.0.imap.folders": [1]}, 'route "hq"', "imap.folders[0]", "expected a folder name"),
    ("junk-overlap", {"routes.0.imap.junk_folders": ["INBOX"]}, 'route "hq"', "imap.junk_folders", "also in imap.folders"),
    ("idle-renew-long", {"routes.0.imap.idle_renew": "30m"}, 'route "hq"', "imap.idle_renew", "less than 29m"),
    ("poll-bad", {"routes.0.imap.poll_interval": 10}, 'route "hq"', "imap.poll_interval", "plain number"),
    ("two-sources", {"routes.0.smtp.password_env": "X"}, 'route "hq"', "smtp.password_env", "give only one of password, password_env"),
    ("no-source", {"routes.0.smtp.password": DELETE}, 'route "hq"', "smtp.password", "smtp.username is set but no password"),
    ("no-username", {"routes.0.smtp.username": DELETE}, 'route "hq"', "smtp.password", "no smtp.username"),
    ("username-empty", {"routes.0.smtp.username": ""}, 'route "hq"', "smtp.username", "must not be empty"),
    ("password-not-string", {"routes.0.smtp.password": 12345}, 'route "hq"', "smtp.password", "expected a string, got an integer"),
    ("password-empty", {"routes.0.smtp.password": ""}, 'route "hq"', "smtp.password", "is empty"),
    ("env-name-bad", {"routes.0.imap.password_env": "NOT A NAME"}, 'route "hq"', "imap.password_env", "environment variable name"),
    ("env-unset", {"routes.0.imap.password_env": "FLOWTUI_TEST_SURELY_UNSET"}, 'route "hq"', "imap.password_env", "FLOWTUI_TEST_SURELY_UNSET is not set"),
    ("command-fails", {"routes.0.imap.password_env": DELETE, "routes.0.imap.password_command": "exit 3"}, 'route "hq"', "imap.password_command", "failed with exit code 3"),
    ("command-not-found", {"routes.0.imap.password_env": DELETE, "routes.0.imap.password_command": "flowtui-no-such-tool-xyz"}, 'route "hq"', "imap.password_command", "exit code 127 (command not found)"),
    ("command-silent", {"routes.0.imap.password_env": DELETE, "routes.0.imap.password_command": "true"}, 'route "hq"', "imap.password_command", "printed nothing"),
    ("command-blank-line", {"routes.0.imap.password_env": DELETE, "routes.0.imap.password_command": "printf '  \\nsecond\\n'"}, 'route "hq"', "imap.password_command", "printed nothing"),
    ("command-stderr-hidden", {"routes.0.imap.password_env": DELETE, "routes.0.imap.password_command": f"echo {IMAP_PW} >&2; exit 1"}, 'route "hq"', "imap.password_command", "exit code 1"),
    ("from-bad", {"routes.0.from": "not-an-address"}, 'route "hq"', "from", "expected a bare address"),
    ("to-display-name", {"routes.0.to": "Probe <p@example.net>"}, 'route "hq"', "to", "expected a bare address"),
    ("to-missing", {"routes.0.to": DELETE}, 'route "hq"', "to", 'missing required key "to"'),
    ("smtp-missing", {"routes.0.smtp": DELETE}, 'route "hq"', "smtp", "missing required table [routes.smtp]"),
    ("smtp-not-table", {"routes.0.smtp": "smtp.example.com"}, 'route "hq"', "smtp", "expected a table ([routes.smtp]), got a string"),
    ("host-missing", {"routes.0.imap.host": DELETE}, 'route "hq"', "imap.host", 'missing required key "imap.host"'),
    ("host-space", {"routes.0.imap.host": "imap example"}, 'route "hq"', "imap.host", "expected a host name"),
    ("jitter-too-big", {"routes.0.jitter": "2m"}, 'route "hq"', "jitter", "less than the interval (1m)"),
    ("warn-above-crit", {"routes.0.warn": "10m", "routes.0.crit": "5m"}, 'route "hq"', "warn", 'must not be more than crit (5m), got "10m"'),
    ("warn-above-default-crit", {"routes.0.warn": "10m"}, 'route "hq"', "warn", 'must not be more than crit (5m, the default), got "10m"'),
    ("crit-below-default-warn", {"routes.0.crit": "30s"}, 'route "hq"', "crit", 'must not be less than warn (1m30s, the default), got "30s"'),
    ("attachment-unit", {"routes.0.attachment_size": "10 parsecs"}, 'route "hq"', "attachment_size", 'expected a size such as "10KB"'),
    ("attachment-negative", {"routes.0.attachment_size": -1}, 'route "hq"', "attachment_size", "0 or more bytes"),
    ("attachment-huge", {"routes.0.attachment_size": "1GB"}, 'route "hq"', "attachment_size", "too large"),
    ("verify-tls-string", {"routes.0.smtp.verify_tls": "yes"}, 'route "hq"', "smtp.verify_tls", 'expected true or false, got "yes"'),
    ("require-tls-int", {"routes.0.require_tls": 1}, 'route "hq"', "require_tls", "expected true or false, got 1"),
    ("ca-file-missing", {"routes.0.smtp.ca_file": "nope/ca.pem"}, 'route "hq"', "smtp.ca_file", "no such file"),
    ("subject-newline", {"routes.0.subject": "a\r\nBcc: x@y"}, 'route "hq"', "subject", "line breaks"),
    ("top-unknown", {"monitr": {}}, None, "monitr", 'unknown key "monitr" (did you mean "monitor"?)'),
    ("alerts-unknown-key", {"alerts": {"kind": "lost", "x": 1}}, None, "alerts[0]", 'unknown key "x"'),
    ("alerts-kind-typo", {"alerts": [{"kind": "latncy"}]}, None, "alerts[0].kind", 'did you mean "latency"?'),
    ("alerts-kind-missing", {"alerts": [{"n": 2}]}, None, "alerts[0]", 'missing required key "kind"'),
    ("alerts-m-over-n", {"alerts": [{"kind": "lost", "m": 3, "n": 2}]}, None, "alerts[0].m", "must not be more than n (2)"),
    ("alerts-route-unknown", {"alerts": [{"kind": "lost", "routes": ["hqx"]}]}, None, "alerts[0].routes", 'no route named "hqx" (did you mean "hq"?)'),
    ("route-alerts-severity", {"routes.0.alerts": [{"kind": "junk", "severity": "critical"}]}, 'route "hq"', "alerts[0].severity", 'did you mean "crit"?'),
    ("route-alerts-routes", {"routes.0.alerts": [{"kind": "junk", "routes": ["hq"]}]}, 'route "hq"', "alerts[0].routes", "leave routes out"),
    ("dns-unknown-key", {"dns": {"domain": ["x.test"]}}, None, "dns", 'unknown key "domain" (did you mean "domains"?)'),
    ("dns-nameserver-bad", {"dns": {"nameservers": ["dns.example:53"]}}, None, "dns.nameservers[0]", "expected an IP address"),
    ("dns-record-typo", {"dns": {"records": ["MTASTS"]}}, None, "dns.records[0]", 'did you mean "MTA-STS"?'),
    ("notify-kind-missing", {"notify": [{"url": "http://127.0.0.1/"}]}, None, "notify[0]", 'missing required key "kind"'),
    ("notify-webhook-no-url", {"notify": [{"kind": "webhook"}]}, None, "notify[0]", 'a webhook needs "url"'),
    ("notify-timeout", {"notify": [{"kind": "bell", "timeout": 5}]}, None, "notify[0].timeout", "plain number"),
    ("routes-missing", {"routes": DELETE}, None, "routes", "no routes"),
    ("routes-empty", {"routes": []}, None, "routes", "an empty array"),
    ("routes-single-table", {"routes": {"name": "x"}}, None, "routes", "got a single table ([routes])"),
]


@pytest.mark.parametrize(("mods", "where", "key", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_names_file_route_and_key(tmp_path: Path, mods: dict, where: str | None, key: str, expected: str) -> None:
    path = _write(tmp_path, _doc(mods))
    message = _error(path)
    assert message.startswith(f"{path}: "), message
    if where is not None:
        assert f"{path}: {where}: " in message, message
    else:
        assert not message[len(f"{path}: "):].startswith(('route "', "routes[")), message
    assert key in message, message
    assert expected in message, message


def test_error_uses_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, _doc({"routes.0.smtp.port": "abc"}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as info:
        load_config("config.toml")
    assert str(info.value) == 'config.toml: route "hq": smtp.port: expected an integer 1-65535, got "abc"'


def test_unnamed_route_is_named_by_index(tmp_path: Path) -> None:
    doc = _doc({})
    second = copy.deepcopy(doc["routes"][0])
    second["name"] = 7
    doc["routes"].append(second)
    message = _error(_write(tmp_path, doc))
    assert ": routes[1]: name: expected a string, got 7" in message


def test_duplicate_route_names(tmp_path: Path) -> None:
    doc = _doc({})
    doc["routes"].append(copy.deepcopy(doc["routes"][0]))
    message = _error(_write(tmp_path, doc))
    assert message.endswith('route "hq": name: duplicate route name (also routes[0]); route names must be unique')


def test_structure_is_checked_before_any_password_command_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    doc = _doc({"routes.0.imap.password_env": DELETE, "routes.0.imap.password_command": f"touch {marker}; echo pw"})
    second = copy.deepcopy(doc["routes"][0])
    second["name"] = "second"
    second["smtp"]["port"] = "abc"
    doc["routes"].append(second)
    message = _error(_write(tmp_path, doc))
    assert 'route "second": smtp.port' in message
    assert not marker.exists()


# --------------------------------------------------------------------------
# The file itself
# --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    assert _error(path) == f"{path}: no such file"


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in _error(tmp_path)


def test_unreadable_file_any_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, _doc({}))

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert _error(path) == f"{path}: cannot read: permission denied"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[monitor]\ninterval = \n", 2),
        ('[monitor]\n\n\ndatabase = "x\n', 4),
        ("[[routes]]\nname = 'a'\nname = 'b'\n", 3),
    ],
)
def test_not_toml_gives_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = _write(tmp_path, text)
    message = _error(path)
    assert message.startswith(f"{path}: line {line}: not valid TOML: "), message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[monitor]\n# caf\xe9\n")
    assert _error(path) == f"{path}: line 2: not valid TOML: the file is not UTF-8 text"


# --------------------------------------------------------------------------
# Durations and sizes
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1m30s", 90),
     ("1h 30m", 5400), ("1.5s", 1.5), ("2h3m4s", 7384), ("0s", 0), ("1m500ms", 60.5), ("10M", 600)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "hint"),
    [(30, 'the plain number 30 (add a unit'), (1.5, "plain number 1.5"), ("30", 'such as "30s"'),
     ("", "expected a duration"), ("s", "expected a duration"), ("5 minutes", "expected a duration"),
     ("-5s", "expected a duration"), ("1w", "expected a duration"), (True, "got true"), (None, "got nothing")],
)
def test_parse_duration_rejects(value: object, hint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(hint)):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [(0.5, "500ms"), (30, "30s"), (90, "1m30s"), (600, "10m"), (3600, "1h"), (90061, "1d1h1m1s"), (1.5, "1.5s")])
def test_format_duration_reads_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 0), (1234, 1234), ("10KB", 10_000), ("1MB", 1_000_000), ("512KiB", 524_288), ("2 MiB", 2 * 1024**2), ("100", 100), ("100B", 100)],
)
def test_parse_size(value: object, size: int) -> None:
    assert parse_size(value) == size


# --------------------------------------------------------------------------
# Defaults, inheritance, paths
# --------------------------------------------------------------------------


def _minimal(smtp_host: str = "smtp.example.com", imap_host: str = "imap.example.net") -> dict[str, Any]:
    return {
        "routes": [
            {"name": "r", "from": "a@example.com", "to": "b@example.net",
             "smtp": {"host": smtp_host}, "imap": {"host": imap_host}},
        ]
    }


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, _minimal()))
    assert cfg.path == str(tmp_path.resolve() / "config.toml")
    m = cfg.monitor
    assert (m.database, m.interval_s, m.timeout_s) == (str(tmp_path.resolve() / "flowtui.db"), 60.0, 600.0)
    assert m.secret_file == str(tmp_path.resolve() / "flowtui.db.secret")
    (route,) = cfg.routes
    assert (route.interval_s, route.timeout_s, route.jitter_s) == (60.0, 600.0, 2.0)
    assert (route.warn_s, route.crit_s, route.require_tls, route.attachment_bytes) == (90.0, 300.0, False, 0)
    assert route.subject == "flowtui probe"
    smtp, imap = route.smtp, route.imap
    assert (smtp.port, smtp.security, smtp.username, smtp.password, smtp.verify_tls, smtp.ca_file, smtp.timeout_s) == (
        587, Security.STARTTLS, None, None, True, None, 30.0)
    assert isinstance(imap, ImapSettings)
    assert (imap.port, imap.security, imap.folders, imap.junk_folders) == (993, Security.TLS, ("INBOX",), None)
    assert (imap.poll_interval_s, imap.idle_renew_s, imap.timeout_s) == (10.0, 600.0, 30.0)


@pytest.mark.parametrize(
    ("kind", "security", "port"),
    [("smtp", "none", 25), ("smtp", "starttls", 587), ("smtp", "tls", 465),
     ("imap", "none", 143), ("imap", "starttls", 143), ("imap", "tls", 993), ("imap", "TLS", 993)],
)
def test_default_ports_follow_security(tmp_path: Path, kind: str, security: str, port: int) -> None:
    doc = _minimal()
    doc["routes"][0][kind]["security"] = security
    server = getattr(load_config(_write(tmp_path, doc)).routes[0], kind)
    assert (server.port, server.security.value) == (port, security.lower())


def test_routes_inherit_from_monitor_unless_given(tmp_path: Path) -> None:
    doc = _minimal()
    doc["monitor"] = {"interval": "5m", "timeout": "1h"}
    other = copy.deepcopy(doc["routes"][0])
    other.update(name="own", interval="30s", timeout="2m", jitter="0s", warn="10s", crit="20s")
    doc["routes"].append(other)
    inherit, own = load_config(_write(tmp_path, doc)).routes
    assert (inherit.interval_s, inherit.timeout_s) == (300.0, 3600.0)
    assert (own.interval_s, own.timeout_s, own.jitter_s, own.warn_s, own.crit_s) == (30.0, 120.0, 0.0, 10.0, 20.0)


@pytest.mark.parametrize(
    ("smtp_host", "imap_host", "warn", "crit"),
    [("127.0.0.1", "127.0.0.1", 5.0, 30.0), ("localhost", "::1", 5.0, 30.0), ("[::1]", "127.0.0.2", 5.0, 30.0),
     ("127.0.0.1", "imap.example.net", 90.0, 300.0), ("smtp.example.com", "127.0.0.1", 90.0, 300.0)],
)
def test_loopback_routes_get_low_thresholds(tmp_path: Path, smtp_host: str, imap_host: str, warn: float, crit: float) -> None:
    route = load_config(_write(tmp_path, _minimal(smtp_host, imap_host))).routes[0]
    assert (route.warn_s, route.crit_s) == (warn, crit)
    assert "[" not in route.smtp.host


def test_all_keys_given(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text(_cert_pem())
    doc = _minimal()
    doc["monitor"] = {"database": "data/probes.db", "secret_file": "keys/flowtui.key"}
    doc["routes"][0].update(subject="hello", body="line1\nline2\n", attachment_size="10KB", require_tls=True)
    doc["routes"][0]["smtp"].update(port=2525, security="tls", verify_tls=False, ca_file="certs/ca.pem", timeout="45s")
    doc["routes"][0]["imap"].update(folders=["INBOX", "Probes"], junk_folders=[], poll_interval="5s", idle_renew="28m")
    cfg = load_config(_write(tmp_path, doc))
    base = tmp_path.resolve()
    assert cfg.monitor.database == str(base / "data" / "probes.db")
    assert cfg.monitor.secret_file == str(base / "keys" / "flowtui.key")
    route = cfg.routes[0]
    assert (route.subject, route.body, route.attachment_bytes, route.require_tls) == ("hello", "line1\nline2\n", 10_000, True)
    assert (route.smtp.port, route.smtp.security, route.smtp.verify_tls, route.smtp.timeout_s) == (2525, Security.TLS, False, 45.0)
    assert route.smtp.ca_file == str(base / "certs" / "ca.pem")
    assert (route.imap.folders, route.imap.junk_folders) == (("INBOX", "Probes"), ())
    assert (route.imap.poll_interval_s, route.imap.idle_renew_s) == (5.0, 28 * 60.0)


def test_relative_paths_are_relative_to_the_file_not_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    (conf_dir / "ca.pem").write_text(_cert_pem())
    doc = _minimal()
    doc["monitor"] = {"database": "../var/flowtui.db"}
    doc["routes"][0]["imap"]["ca_file"] = "ca.pem"
    _write(conf_dir, doc)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config("../etc/config.toml")
    assert cfg.path == str(conf_dir.resolve() / "config.toml")
    assert cfg.monitor.database == str(tmp_path.resolve() / "var" / "flowtui.db")
    assert cfg.monitor.secret_file == str(tmp_path.resolve() / "var" / "flowtui.db.secret")
    assert cfg.routes[0].imap.ca_file == str(conf_dir.resolve() / "ca.pem")
    assert os.path.isabs(cfg.routes[0].imap.ca_file)


# --------------------------------------------------------------------------
# Passwords
# --------------------------------------------------------------------------


def test_password_sources(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("  from-file-pw  \nignored second line\n")
    doc = _doc({})
    third = copy.deepcopy(doc["routes"][0])
    third["name"] = "cmd"
    del third["imap"]["password_env"]
    third["imap"]["password_command"] = "cat pw.txt"  # run in the config file's directory
    doc["routes"].append(third)
    hq, cmd = load_config(_write(tmp_path, doc)).routes
    assert (hq.smtp.password.value, hq.smtp.password.source) == (SMTP_PW, "literal")
    assert (hq.imap.password.value, hq.imap.password.source) == (IMAP_PW, f"env {IMAP_ENV}")
    assert (cmd.imap.password.value, cmd.imap.password.source) == ("from-file-pw", "command")


def test_empty_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(IMAP_ENV, "")
    assert f"imap.password_env: environment variable {IMAP_ENV} is empty" in _error(_write(tmp_path, _doc({})))


def test_same_command_runs_once(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    command = f"echo x >> {counter}; echo pw"
    doc = _doc({"routes.0.imap.password_env": DELETE, "routes.0.imap.password_command": command})
    second = copy.deepcopy(doc["routes"][0])
    second["name"] = "second"
    doc["routes"].append(second)
    routes = load_config(_write(tmp_path, doc)).routes
    assert [r.imap.password.value for r in routes] == ["pw", "pw"]
    assert counter.read_text().count("x") == 1


@pytest.mark.parametrize("command", ["sleep 30", "echo started; sleep 30"])
def test_hanging_command_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.setattr(config_mod, "PASSWORD_COMMAND_TIMEOUT_S", 0.5)
    path = _write(tmp_path, _doc({"routes.0.imap.password_env": DELETE, "routes.0.imap.password_command": command}))
    start = time.monotonic()
    message = _error(path)
    assert time.monotonic() - start < 5
    assert message.endswith('route "hq": imap.password_command: the command did not finish within 500ms')


def test_secrets_never_in_repr_or_str(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, _doc({})))
    for text in (repr(cfg), str(cfg), repr(cfg.routes[0].smtp), str(cfg.routes[0].imap.password)):
        for secret in SECRETS:
            assert secret not in text
    assert "source='literal'" in repr(cfg) and f"source='env {IMAP_ENV}'" in repr(cfg)


# --------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------


def test_literal_password_in_readable_file_warns(tmp_path: Path) -> None:
    path = _write(tmp_path, _doc({}), mode=0o644)
    cfg = load_config(path)
    (warning,) = config_warnings(cfg)
    assert "holds a literal password but is readable by group or others (mode 0644)" in warning
    assert warning.startswith(str(path.resolve()))
    path.chmod(0o600)
    assert config_warnings(cfg) == []


def test_readable_file_without_literal_password_is_fine(tmp_path: Path) -> None:
    doc = _doc({"routes.0.smtp.password": DELETE, "routes.0.smtp.password_env": IMAP_ENV})
    assert config_warnings(load_config(_write(tmp_path, doc, mode=0o644))) == []


def test_unwise_tls_settings_warn(tmp_path: Path) -> None:
    doc = _doc({"routes.0.smtp.verify_tls": False, "routes.0.imap.security": "none"})
    warnings = config_warnings(load_config(_write(tmp_path, doc)))
    assert len(warnings) == 2
    assert 'route "hq": smtp.verify_tls: certificate verification is off' in warnings[0]
    assert 'route "hq": imap.security: the password is sent unencrypted to imap.example.net' in warnings[1]
    # unencrypted on loopback (a lab) is not worth a warning
    doc = _doc({"routes.0.imap.security": "none", "routes.0.imap.host": "127.0.0.1"})
    assert config_warnings(load_config(_write(tmp_path, doc))) == []


# --------------------------------------------------------------------------
# What others write and ship
# --------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True])
def test_lab_config_loads(tmp_path: Path, tls: bool) -> None:
    from flowtui.lab.common import PROBE_USER, SENDER_USER, LabState, write_lab_config

    if tls:
        (tmp_path / "tls").mkdir()
        (tmp_path / "tls" / "cert.pem").write_text(_cert_pem())
    state = LabState(
        kind="embedded", dir=str(tmp_path), hops=3, smtp_ports=[2525, 2526, 2527], imap_port=1143,
        imaps_port=1993, passwords={SENDER_USER: "sender-pw-123", PROBE_USER: "probe-pw-456"},
    )
    path = write_lab_config(state, tls=tls)
    cfg = load_config(path)
    (route,) = cfg.routes
    assert route.name == "lab-embedded-3hop"
    assert (route.mail_from, route.rcpt_to) == (SENDER_USER, PROBE_USER)
    assert (route.interval_s, route.timeout_s, route.warn_s, route.crit_s) == (10.0, 60.0, 5.0, 30.0)
    assert route.smtp.port == 2525 and route.smtp.password.value == "sender-pw-123"
    assert route.imap.password.source == "literal" and route.imap.password.value == "probe-pw-456"
    assert route.imap.junk_folders == ("Junk",)
    if tls:
        assert (route.smtp.security, route.imap.security, route.imap.port) == (Security.STARTTLS, Security.TLS, 1993)
        assert route.smtp.ca_file == route.imap.ca_file == str(tmp_path.resolve() / "tls" / "cert.pem")
    else:
        assert (route.smtp.security, route.imap.security, route.imap.port) == (Security.NONE, Security.NONE, 1143)
    assert cfg.monitor.database == str(tmp_path.resolve() / "flowtui.db")
    assert config_warnings(cfg) == []  # written 0600, loopback only


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "config.example.toml"
    text = path.read_text()
    for name in sorted(set(re.findall(r'password_env = "([A-Z0-9_]+)"', text)) | set(re.findall(r"printenv ([A-Z0-9_]+)", text))):
        monkeypatch.setenv(name, f"example-{name}")
    cfg = load_config(path)
    assert [r.name for r in cfg.routes] == ["hq-to-gmail", "lab"]
    hq = cfg.routes[0]
    assert hq.imap.password.value == "example-FLOWTUI_HQ_IMAP"
    assert hq.bounces is not None and hq.bounces.password.value == "example-FLOWTUI_HQ_BOUNCES"
    assert hq.bounces.folders == ("INBOX",) and hq.bounces.poll_interval_s == 30 and cfg.routes[1].bounces is None
    assert hq.attachment_bytes == 10_000 and hq.require_tls
    assert not re.search(r"^\s*password\s*=", text, re.M)  # no literal passwords in the example


def test_example_config_documents_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text()
    keys = set(config_mod.MONITOR_KEYS + config_mod.ROUTE_KEYS + config_mod.SERVER_KEYS + config_mod.IMAP_ONLY_KEYS)
    keys -= {"smtp", "imap", "oauth2", "bounces"}  # tables: [routes.smtp], [routes.imap], [routes.smtp.oauth2], ...
    missing = [k for k in sorted(keys) if not re.search(rf"^\s*(#\s*)?{k}\s*=", text, re.M)]
    assert missing == []
    for table in ("[[alerts]]", "[dns]", "[[notify]]", "[routes.smtp.oauth2]", "[routes.bounces]"):
        assert table in text


def test_core_config_imports_without_textual() -> None:
    code = (
        "import sys, flowtui.core.config, flowtui.checkcmd;"
        "bad = [m for m in ('textual', 'rich') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_group_readable_is_enough_to_warn(tmp_path: Path) -> None:
    path = _write(tmp_path, _doc({}), mode=0o640)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert len(config_warnings(load_config(path))) == 1


@pytest.mark.parametrize(
    "mods, where, words",
    [
        ({"routes.0.interval": "9999999999999999999d"}, "interval", "too large"),
        ({"routes.0.name": "r" * 101}, "name", "at most 100"),
        ({"routes.0.smtp.ca_file": "bad.pem"}, "smtp.ca_file", "not a PEM certificate bundle"),
        ({"routes.0.smtp.password": "p" * 5000}, "smtp.password", "at most 4096"),
    ],
)
def test_limits_found_by_trying_to_break_it(tmp_path: Path, mods, where, words) -> None:
    (tmp_path / "bad.pem").write_text("not a certificate")
    message = _error(_write(tmp_path, _doc(mods)))
    assert where in message and words in message and "p" * 100 not in message


@pytest.mark.parametrize("bounces, error", [
    ({"host": "127.0.0.1", "usrname": "x"}, 'route "hq": bounces: unknown key "usrname" (did you mean "username"?)'),
    ({"host": "127.0.0.1", "username": "x"}, 'route "hq": bounces.password: bounces.username is set but no password'),
    ({"port": 993}, 'route "hq": missing required key "bounces.host"'),
    ({"host": "127.0.0.1", "folders": []}, 'route "hq": bounces.folders'),
    ("imap.example.com", 'route "hq": bounces: expected a table ([routes.bounces])'),
])
def test_bounce_mailbox_errors_name_the_table(tmp_path: Path, bounces, error) -> None:
    assert error in _error(_write(tmp_path, _doc({"routes.0.bounces": bounces})))
