from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/mail.py

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_real_mail() -> None:
    """Skip a Postfix/Dovecot test on a developer machine without them; fail in CI."""
    missing = [t for t in ("postfix", "dovecot") if not (shutil.which(t) or os.path.exists(f"/usr/sbin/{t}"))]
    if not os.path.exists("/usr/lib/dovecot/lmtp"):
        missing.append("dovecot-lmtpd")
    why = None
    if missing:
        why = f"not installed: {', '.join(missing)} (.ci/run installs them)"
    elif os.geteuid() != 0:
        why = "the Postfix lab needs root"
    if why:
        if IN_CI:
            pytest.fail(f"CI=true and the real mail servers cannot run: {why}")
        pytest.skip(why)


@pytest.fixture
def lab_dir():
    """A directory every user can traverse (the mail daemons run as other users)."""
    path = Path(tempfile.mkdtemp(prefix="flowtui-lab-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    from flowtui.lab.procs import stop_everything_in

    stop_everything_in(path)  # a test that failed half-way leaves no lab running
    shutil.rmtree(path, ignore_errors=True)


def need_chromium() -> str:
    """The path of headless Chromium: skip without it on a developer machine, fail in CI."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        why = "not installed: chromium (.ci/run installs it)"
        if IN_CI:
            pytest.fail(f"CI=true and Chromium cannot run: {why}")
        pytest.skip(why)
    return path
