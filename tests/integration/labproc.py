"""Which processes belong to a lab directory (for 'down leaves nothing' checks)."""

from __future__ import annotations

import os
import subprocess
import sys


def processes_in(lab_dir: str) -> dict[int, str]:
    """Live processes whose working directory, command line or config lies in lab_dir."""
    found = {}
    lab_dir = os.path.realpath(lab_dir)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            cwd = os.path.realpath(os.readlink(f"/proc/{pid}/cwd"))
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == lab_dir or cwd.startswith(lab_dir + "/") or lab_dir in cmd:
            found[pid] = f"{cmd.strip()} (cwd {cwd})"
    return found


def flowtui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "flowtui", *args], capture_output=True, text=True, timeout=timeout
    )
