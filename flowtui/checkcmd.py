"""``flowtui check -c FILE``: validate a config and show what it would monitor.

Prints each route (addresses, servers, timings) and where each password comes
from, never a password itself.  Warnings go to stderr.  Exit 0 when the file
is valid; 2 with one line (``flowtui: FILE: ...``) when it is not.
"""

from __future__ import annotations

import argparse
import sys

from flowtui.core.config import config_warnings, format_duration, load_config
from flowtui.core.model import Config, ImapSettings, Route, ServerSettings


def _server(kind: str, server: ServerSettings) -> str:
    text = f"  {kind:<5} {server.host}:{server.port} {server.security.value}"
    if server.username is not None and server.oauth2 is not None:
        o = server.oauth2
        source = "token_command" if o.token_command else f"{o.flow} flow at {o.token_url}"
        text += f"  user {server.username} ({server.auth}: {source})"
    elif server.username is not None:
        source = server.password.source if server.password is not None else "none"
        text += f"  user {server.username} (password: {source})"
    else:
        text += "  no login"
    if not server.verify_tls:
        text += "  verify_tls=false"
    if server.ca_file:
        text += f"  ca {server.ca_file}"
    if isinstance(server, ImapSettings):
        text += f"\n        folders {', '.join(server.folders)}"
        if kind != "bounces":  # read-only, searched for failure reports: no junk folders
            junk = "(SPECIAL-USE \\Junk)" if server.junk_folders is None else ", ".join(server.junk_folders) or "(none)"
            text += f"  junk {junk}"
    return text


def _route(route: Route) -> str:
    d = format_duration
    lines = [
        f'route "{route.name}"',
        f"  {route.mail_from} -> {route.rcpt_to}",
        _server("smtp", route.smtp),
        _server("imap", route.imap),
        *([_server("bounces", route.bounces)] if route.bounces is not None else []),
        f"  every {d(route.interval_s)} (jitter {d(route.jitter_s)}), timeout {d(route.timeout_s)}, "
        f"warn {d(route.warn_s)}, crit {d(route.crit_s)}"
        + (", require_tls" if route.require_tls else "")
        + (f", attachment {route.attachment_bytes} bytes" if route.attachment_bytes else ""),
    ]
    return "\n".join(lines)


def render(config: Config) -> str:
    m = config.monitor
    head = [
        f"{config.path}: valid, {len(config.routes)} route{'s' if len(config.routes) != 1 else ''}",
        f"  database {m.database}",
        f"  secret   {m.secret_file}",
    ]
    tail = []
    if config.dmarc is not None:  # DMARC aggregate reports (issue 10)
        dm = config.dmarc
        action = f"move:{dm.move_to}" if dm.on_import == "move" else dm.on_import
        tail = [f"dmarc reports: folder {dm.folder}, every {format_duration(dm.interval_s)}, on import {action}",
                _server("imap", dm.imap)]
    return "\n".join(head + [_route(r) for r in config.routes] + tail)


def render_logins(reports: list) -> str:
    """Per route and server: whether the login works, and what the server offers."""
    lines: list[str] = []
    last = None
    for route, r in reports:
        if route != last:
            lines.append(f"{route}: logins" if route.startswith("[") else f'route "{route}": logins')
            last = route
        s = r.server
        how = s.auth if s.username else "no login"
        if r.ok:
            status = f"login ok as {s.username} ({how})" if r.logged_in else "connected (no login configured)"
        else:
            status = f"login FAILED ({how}) at {r.phase}: {r.error}"
        lines.append(f"  {r.where}: {status}")
        offers = f"has {' '.join(r.has) or '-'}"
        if r.lacks:
            offers += f"; lacks {' '.join(r.lacks)}"
        offers += f"; AUTH {' '.join(r.mechanisms) or '-'}"
        lines.append(f"        {offers}")
    return "\n".join(lines)


def _theme_warnings(config: Config) -> list[str]:
    """[ui] theme naming no theme file (read as TOML here: no UI import for a check)."""
    want = config.ui.theme
    if not want:
        return []
    import os
    import tomllib
    from pathlib import Path

    import flowtui

    folders = [Path(flowtui.__file__).parent / "ui" / "themes",
               Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "flowtui" / "themes"]
    if config.ui.theme_dir:
        folders.append(Path(config.ui.theme_dir))
    names: set[str] = set()
    for folder in folders:
        for path in sorted(folder.glob("*.toml")) if folder.is_dir() else ():
            try:
                name = tomllib.loads(path.read_text(encoding="utf-8")).get("name")
            except (OSError, ValueError):
                continue
            if isinstance(name, str):
                names.add(name)
    if want in names or f"flowtui-{want}" in names:
        return []
    return [f"{config.path}: ui.theme: no theme named {want!r} (themes: {', '.join(sorted(names))}); "
            f"the monitor would use the default"]


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(render(config))
    for warning in config_warnings(config) + _theme_warnings(config):
        print(f"flowtui: warning: {warning}", file=sys.stderr)
    if getattr(args, "login", False):
        import asyncio

        from flowtui.core.logincheck import check_logins

        reports = asyncio.run(check_logins(config))
        print(render_logins(reports), flush=True)
        failed = sum(1 for _, r in reports if not r.ok)
        if failed:
            print(f"flowtui: {failed} login{'s' if failed != 1 else ''} failed", file=sys.stderr)
            return 1
    return 0
