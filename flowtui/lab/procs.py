"""Finding and ending the process trees a lab started (no systemd, no pkill by name)."""

from __future__ import annotations

import os
import signal
import time

from flowtui.lab.common import pid_alive


def _parents() -> dict[int, int]:
    out: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out[int(name)] = int(fields[1])
    return out


def tree(root: int) -> set[int]:
    """``root`` and all its live descendants."""
    parents = _parents()
    if root not in parents:
        return set()
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def wait_all_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait until none of ``pids`` lives; return those still alive at the timeout."""
    deadline = time.monotonic() + timeout
    alive = {p for p in pids if pid_alive(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {p for p in alive if pid_alive(p)}
    return alive


def kill_all(pids: set[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def read_pid(path: str | os.PathLike[str]) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
