"""The lab's one-line answers when it cannot run here (no servers needed)."""

from __future__ import annotations

import os
import shutil

import pytest

from flowtui.cli import main
from flowtui.lab import postfix


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_without_root_one_line_points_to_embedded(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name, path=None: f"/usr/sbin/{name}")
    monkeypatch.setattr(os.path, "exists", lambda p: True)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, out, err = run(capsys, "lab", "up", "--dir", str(tmp_path / "lab"))
    assert code == 2
    assert err.count("\n") == 1 and "root" in err and "--embedded" in err
    assert not (tmp_path / "lab").exists()  # refused before touching anything


@pytest.mark.parametrize("missing", ["postfix", "dovecot"])
def test_missing_package_names_the_apt_get_that_fixes_it(monkeypatch, capsys, tmp_path, missing):
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, path=None: None if name == missing else (real_which(name) or f"/usr/sbin/{name}")
    )
    code, out, err = run(capsys, "lab", "up", "--dir", str(tmp_path / "lab"))
    assert code == 2
    assert err.count("\n") == 1
    assert f"{missing} is not installed" in err and "apt-get install" in err and "dovecot-imapd" in err


def test_missing_lmtp_is_named(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name, path=None: f"/usr/sbin/{name}")
    monkeypatch.setattr(os.path, "exists", lambda p: p != postfix.DOVECOT_LMTP)
    code, _, err = run(capsys, "lab", "up", "--dir", str(tmp_path / "lab"))
    assert code == 2 and "dovecot-lmtpd" in err and "apt-get install" in err


@pytest.mark.parametrize("hops", ["1", "9"])
def test_hops_out_of_range(capsys, tmp_path, hops):
    code, _, err = run(capsys, "lab", "up", "--embedded", "--dir", str(tmp_path / "lab"), "--hops", hops)
    assert code == 2 and "--hops" in err and err.count("\n") == 1


def test_commands_on_a_directory_without_a_lab(capsys, tmp_path):
    code, _, err = run(capsys, "lab", "status", "--dir", str(tmp_path))
    assert code == 2 and "no lab here" in err and str(tmp_path) in err


def test_untraversable_parent_is_explained(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    (locked / "lab").mkdir()
    from flowtui.core.errors import UserError

    with pytest.raises(UserError) as exc:
        postfix._check_traversable(locked / "lab")
    assert "cannot reach" in str(exc.value) and "0700" in str(exc.value)
