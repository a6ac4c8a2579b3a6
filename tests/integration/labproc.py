"""Which processes belong to a lab directory (for 'down leaves nothing' checks)."""

from __future__ import annotations

import subprocess
import sys


def flowtui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "flowtui", *args], capture_output=True, text=True, timeout=timeout
    )
