"""``flowtui lab ...``: dispatch to the real (Postfix) or the embedded lab."""

from __future__ import annotations

import argparse

from flowtui.core.errors import UserError
from flowtui.lab.common import LabState, describe


def _kind(lab_dir: str):
    state = LabState.load(lab_dir)
    if state.kind == "embedded":
        from flowtui.lab import embedded_control as impl
    else:
        from flowtui.lab import postfix as impl
    return impl


def main(args: argparse.Namespace) -> int:
    cmd = args.lab_cmd
    if cmd == "up":
        url = getattr(args, "oauth2_introspection_url", None)
        if args.embedded:
            if url:
                raise UserError("lab: --oauth2-introspection-url needs the Postfix lab (not --embedded)")
            from flowtui.lab import embedded_control as impl
        else:
            from flowtui.lab import postfix as impl
        state = impl.up(args.dir, args.hops, **({"oauth2_introspection_url": url} if url else {}))
        print(describe(state))
        return 0
    if cmd == "down":
        try:
            impl = _kind(args.dir)
        except UserError as exc:  # no readable lab.json: stop whatever runs in DIR
            from flowtui.lab.procs import stop_everything_in

            stopped = stop_everything_in(args.dir)
            if not stopped:
                raise
            print(f"lab down: {exc}; stopped {len(stopped)} processes running in {args.dir}")
            return 0
    else:
        impl = _kind(args.dir)
    if cmd == "down":
        stopped = impl.down(args.dir)
        print(f"lab down: stopped {', '.join(stopped)}" if stopped else "lab down: nothing was running")
        return 0
    if cmd == "status":
        report = impl.status(args.dir)
        for name, what in report.items():
            print(f"{name:8} {what}")
        return 0 if any(v.startswith("running") for v in report.values()) else 3
    actions = {
        "hold": impl.hold,
        "release": impl.release,
        "stop": impl.stop_hop,
        "start": impl.start_hop,
    }
    if args.hop == "imap":
        imap_actions = {"stop": getattr(impl, "stop_imap", None), "start": getattr(impl, "start_imap", None)}
        action = imap_actions.get(cmd)
        if action is None:
            raise UserError(f"lab: '{cmd} imap' is not supported by the {LabState.load(args.dir).kind} lab")
        print(action(args.dir))
        return 0
    print(actions[cmd](args.dir, args.hop))
    return 0
