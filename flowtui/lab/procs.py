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


def _cwd_and_cmdline(pid: int) -> tuple[str, str] | None:
    try:
        cwd = os.path.realpath(os.readlink(f"/proc/{pid}/cwd"))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return cwd, cmd


def belongs_to(pid: int, lab_dir: str | os.PathLike[str]) -> bool:
    """True when the live process ``pid`` runs in or names the lab directory.

    A PID from a state file may have been reused by an unrelated process since;
    a lab never signals a process that does not pass this check.
    """
    if not pid_alive(pid):
        return False
    found = _cwd_and_cmdline(pid)
    if found is None:
        return False
    cwd, cmd = found
    root = os.path.realpath(lab_dir)
    return cwd == root or cwd.startswith(root + "/") or root in cmd


def processes_in(lab_dir: str | os.PathLike[str]) -> dict[int, str]:
    """Live processes whose working directory or command line lies in ``lab_dir``."""
    root = os.path.realpath(lab_dir)
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        pid = int(name)
        if not pid_alive(pid):
            continue
        info = _cwd_and_cmdline(pid)
        if info is None:
            continue
        cwd, cmd = info
        if cwd == root or cwd.startswith(root + "/") or root in cmd:
            found[pid] = f"{cmd.strip()} (cwd {cwd})"
    return found


def stop_everything_in(lab_dir: str | os.PathLike[str]) -> set[int]:
    """SIGTERM, then SIGKILL, every process running in ``lab_dir`` and their children."""
    roots = set(processes_in(lab_dir))
    everything = set().union(*(tree(p) for p in roots)) if roots else set()
    kill_all(everything, signal.SIGTERM)
    left = wait_all_gone(everything, timeout=8)
    kill_all(left)
    wait_all_gone(left, timeout=3)
    return everything
