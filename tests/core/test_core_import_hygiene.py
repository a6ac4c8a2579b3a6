"""The core, the headless monitor and the labs load without textual or rich (DESIGN.md "Layers")."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import flowtui.core

ROOT = str(Path(__file__).resolve().parents[2])


def _modules() -> list[str]:
    core = [m.name for m in pkgutil.walk_packages(flowtui.core.__path__, "flowtui.core.")]
    return sorted(core) + ["flowtui.headless", "flowtui.probecmd", "flowtui.cli", "flowtui.lab.embedded", "flowtui.lab.postfix"]


def test_every_core_module_is_found():
    names = _modules()
    for expected in ("flowtui.core.engine", "flowtui.core.storage", "flowtui.core.probes.imap", "flowtui.core.token"):
        assert expected in names


def test_core_and_headless_load_without_textual_or_rich() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {_modules()!r}: importlib.import_module(name)\n"
        "bad = [m for m in ('textual', 'rich') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": ROOT}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[]"
