"""The README's first command: `flowtui demo` (headless, and the TUI in tmux at 80x24).

The demo needs no system packages: embedded labs in the same process."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest



def _read_until(proc: subprocess.Popen, pattern: str, timeout: float) -> str:
    """Lines of the process's merged output until one matches ``pattern``."""
    assert proc.stdout is not None
    out = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
            if re.search(pattern, line):
                return out
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{out}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_headless_demo_delivers_and_cleans_up_on_interrupt_and_hangup(sig):
    proc = subprocess.Popen([sys.executable, "-m", "flowtui", "demo", "--headless"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = rest = ""
    lab_dir = Path("/nonexistent")
    try:
        out = _read_until(proc, r"demo-healthy #\d+ delivered", 60)
        lab_dir = Path(re.search(r"demo lab up in (\S+)/healthy", out).group(1))
        assert lab_dir.is_dir()
        proc.send_signal(sig)  # Ctrl-C, or the terminal going away (ssh dropped)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    leftover = lab_dir.exists()
    shutil.rmtree(lab_dir, ignore_errors=True)  # never leave it behind, even when the check below fails
    assert "Traceback" not in out + rest
    assert not leftover, "the demo's temporary labs and database are removed"


def _demo_dirs() -> set[str]:
    return {str(p) for p in Path(tempfile.gettempdir()).glob("flowtui-demo-*")}


@pytest.mark.parametrize("how", ["q", "hang-up"])
def test_tui_demo_in_tmux_at_80x24_shows_the_routes_and_quits_cleanly(tmp_path, how):
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is needed (.ci/run installs it)")
        pytest.skip("tmux not installed")
    session = f"flowtui-demo-test-{os.getpid()}"
    socket = str(tmp_path / "tmux.sock")
    tmux = ["tmux", "-S", socket]
    env = dict(os.environ, TERM="xterm-256color")
    cmd = f"{sys.executable} -m flowtui demo; echo DEMO-EXITED $?; sleep 30"
    before = _demo_dirs()
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd], check=True, env=env)
    try:
        screen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            if all(f"demo-{n}" in screen for n in ("healthy", "slow", "flaky")) \
                    and re.search(r"\d+(\.\d+)?m?s", screen):
                break
            time.sleep(0.5)
        assert all(f"demo-{n}" in screen for n in ("healthy", "slow", "flaky")), screen
        assert len(screen.splitlines()) <= 24 and max(len(x) for x in screen.splitlines()) <= 80
        if how == "hang-up":  # the terminal goes away: the demo gets SIGHUP and must clean up
            mine = _demo_dirs() - before
            assert len(mine) == 1, mine
            subprocess.run([*tmux, "kill-server"], check=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and mine & _demo_dirs():
                time.sleep(0.5)
            left = mine & _demo_dirs()
            for d in left:
                shutil.rmtree(d, ignore_errors=True)
            assert not left, "a hang-up left the demo's files behind"
            return
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            if "DEMO-EXITED" in screen:
                break
            time.sleep(0.5)
        assert "DEMO-EXITED 0" in screen and "Traceback" not in screen, screen
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
