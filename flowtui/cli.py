"""The one ``flowtui`` entry point.

Sub-commands are registered here; each imports what it needs only when it runs,
so ``flowtui --help`` stays fast and the UI is imported only on the TUI path.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from flowtui import __version__
from flowtui.core.errors import UserError

Handler = Callable[[argparse.Namespace], int]


def _hop_arg(text: str) -> int | str:
    if text.lower() == "imap":
        return "imap"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hop number (1, 2, ...) or 'imap'")


def _lab_parser(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser(
        "lab",
        help="run a local mail lab on loopback (real Postfix+Dovecot, or --embedded)",
        description="A chain of mail hops on 127.0.0.1 ending in an IMAP mailbox, "
        "for demos and tests. Everything lives under --dir.",
    )
    lsub = lab.add_subparsers(dest="lab_cmd", metavar="ACTION", required=True)

    def add(name: str, help_: str, hop: bool = False) -> argparse.ArgumentParser:
        p = lsub.add_parser(name, help=help_, description=help_)
        p.add_argument("--dir", required=True, metavar="DIR", help="the lab's directory")
        if hop:
            p.add_argument("hop", type=_hop_arg, metavar="HOP", help="hop number (1 = the submission hop), or 'imap' for the mailbox server")
        return p

    up = add("up", "start a lab and write DIR/lab.toml")
    up.add_argument("--hops", type=int, default=2, metavar="N", help="relay hops (>= 2, default 2)")
    up.add_argument(
        "--embedded",
        action="store_true",
        help="pure-Python servers (aiosmtpd + pymap): no system packages, no root",
    )
    up.add_argument("--oauth2-introspection-url", metavar="URL",
                    help="Postfix lab: also take XOAUTH2/OAUTHBEARER logins, checking tokens at this "
                    "RFC 7662 endpoint on loopback")
    add("down", "stop everything the lab started")
    add("status", "say what runs")
    add("hold", "hold mail at a hop until release", hop=True)
    add("release", "let held mail at a hop flow on", hop=True)
    add("stop", "stop a hop: it refuses connections", hop=True)
    add("start", "start a stopped hop again", hop=True)


def _run_lab(args: argparse.Namespace) -> int:
    from flowtui.lab import control

    return control.main(args)


def _demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="start the embedded demo lab and monitor it live",
        description="Starts embedded mail labs (no system packages needed) in a "
        "temporary directory and monitors three routes on them: one healthy, one with a "
        "slow hop, one that fails now and then. q (or Ctrl-C with --headless) stops everything.",
    )
    p.add_argument("--dir", metavar="DIR", help="keep the lab here instead of a temporary directory")
    p.add_argument("--hops", type=int, default=2, metavar="N", help="relay hops (default 2)")
    p.add_argument("--headless", action="store_true", help="no UI: one line per result on stdout")
    p.add_argument("--theme", metavar="NAME", help="UI theme: noc, light, contrast (or flowtui-noc ...)")


def _run_demo(args: argparse.Namespace) -> int:
    from flowtui import demo

    return demo.main(args)


def _path_parser(sub: argparse._SubParsersAction) -> None:
    from flowtui import pathcmd

    pathcmd.add_parser(sub)


def _run_path(args: argparse.Namespace) -> int:
    from flowtui import pathcmd

    return pathcmd.main(args)


def _check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="validate a config file and list its routes",
        description="Read and validate the config (passwords are looked up, never shown) "
        "and print the routes it defines. Exit 0 when valid, 2 when not.",
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the config file (TOML)")
    p.add_argument("--login", action="store_true",
                   help="also log in to every server and list what it offers (touches no mail); exit 1 if a login fails")


def _run_check(args: argparse.Namespace) -> int:
    from flowtui import checkcmd

    return checkcmd.main(args)


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the monitor (--headless: one line per result on stdout)",
        description="Runs the monitor on a config. With --headless it prints one line per "
        "probe result and stops cleanly on SIGINT/SIGTERM.",
    )
    p.add_argument("-c", "--config", metavar="FILE",
                   help="the config (default ./flowtui.toml, then $XDG_CONFIG_HOME/flowtui/config.toml)")
    p.add_argument("--headless", action="store_true", help="no UI: one line per result on stdout")
    p.add_argument("--theme", metavar="NAME", help="UI theme: noc, light, contrast (or flowtui-noc ...)")
    p.add_argument("--json", action="store_true", help="with --headless: one JSON object per line")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="with --headless: serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9464)")


NO_CONFIG = (
    "flowtui: no config (-c FILE, ./flowtui.toml or $XDG_CONFIG_HOME/flowtui/config.toml); "
    "try `flowtui demo`, or `flowtui lab up --embedded --dir DIR` then `flowtui -c DIR/lab.toml`"
)


def find_config(given: str | None) -> str | None:
    """-c FILE, else ./flowtui.toml, else $XDG_CONFIG_HOME/flowtui/config.toml (~/.config by default)."""
    import os
    from pathlib import Path

    if given:
        return given
    if Path("flowtui.toml").is_file():
        return "flowtui.toml"
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidate = Path(xdg) / "flowtui" / "config.toml"
    return str(candidate) if candidate.is_file() else None


def _run_run(args: argparse.Namespace) -> int:
    import asyncio

    from flowtui.core.config import config_warnings, load_config

    path = find_config(args.config)
    if path is None:
        print(NO_CONFIG, file=sys.stderr)
        return 2
    config = load_config(path)
    for warning in config_warnings(config):
        print(f"flowtui: warning: {warning}", file=sys.stderr)
    metrics = getattr(args, "metrics", None)
    if metrics is not None and not args.headless:
        raise UserError("--metrics: only with --headless", code=2)
    if args.headless:
        from flowtui import headless

        return asyncio.run(headless.run(config, as_json=args.json, metrics=metrics))
    from flowtui.ui.run import run_tui  # the UI is imported on this path only

    return asyncio.run(run_tui(config, theme=args.theme))


def _probe_parser(sub: argparse._SubParsersAction) -> None:
    from flowtui import probecmd

    probecmd.add_parser(sub)


def _run_probe(args: argparse.Namespace) -> int:
    from flowtui import probecmd

    return probecmd.main(args)


def _alerts_parser(sub: argparse._SubParsersAction) -> None:
    from flowtui import alertscmd

    alertscmd.add_parser(sub)


def _run_alerts(args: argparse.Namespace) -> int:
    from flowtui import alertscmd

    return alertscmd.main(args)


def _report_parser(sub: argparse._SubParsersAction) -> None:
    from flowtui import reportcmd

    reportcmd.add_report_parser(sub)


def _run_report(args: argparse.Namespace) -> int:
    from flowtui import reportcmd

    return reportcmd.report_main(args)


def _export_parser(sub: argparse._SubParsersAction) -> None:
    from flowtui import reportcmd

    reportcmd.add_export_parser(sub)


def _run_export(args: argparse.Namespace) -> int:
    from flowtui import reportcmd

    return reportcmd.export_main(args)


def _dmarc_parser(sub: argparse._SubParsersAction) -> None:
    from flowtui import dmarccmd

    dmarccmd.add_parser(sub)


def _run_dmarc(args: argparse.Namespace) -> int:
    from flowtui import dmarccmd

    return dmarccmd.main(args)


COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], None], Handler]] = {
    "lab": (_lab_parser, _run_lab),
    "demo": (_demo_parser, _run_demo),
    "path": (_path_parser, _run_path),
    "check": (_check_parser, _run_check),
    "run": (_run_parser, _run_run),
    "probe": (_probe_parser, _run_probe),
    "alerts": (_alerts_parser, _run_alerts),
    "report": (_report_parser, _run_report),
    "export": (_export_parser, _run_export),
    "dmarc": (_dmarc_parser, _run_dmarc),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowtui",
        description="Continuous email-flow monitor: sends probe mails along routes, "
        "watches them arrive, records every hop.",
    )
    parser.add_argument("--version", action="version", version=f"flowtui {__version__}")
    parser.add_argument("-c", "--config", dest="top_config", metavar="FILE",
                        help="open the monitor on this config (same as `flowtui run -c FILE`)")
    parser.add_argument("--theme", dest="top_theme", metavar="NAME", help="UI theme")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_parser, _ in COMMANDS.values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `flowtui [-c FILE]`: the monitor
        args = argparse.Namespace(config=args.top_config, theme=args.top_theme, headless=False, json=False,
                                  metrics=None)
        handler = _run_run
    else:
        _, handler = COMMANDS[args.command]
        if getattr(args, "theme", None) is None and getattr(args, "top_theme", None):
            args.theme = args.top_theme
        if args.command == "run" and args.config is None:
            args.config = args.top_config
    try:
        return handler(args)
    except UserError as exc:
        print(f"flowtui: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `flowtui export ... | head`: the reader has what it wanted
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports it


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail (and print) again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except Exception:  # no real stdout (tests): nothing to quiet
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
