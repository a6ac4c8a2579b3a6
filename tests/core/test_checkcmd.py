"""``flowtui check -c FILE``: exit codes, what it prints, and what it never prints."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from flowtui.cli import main

SMTP_PW = "smtp-pw-Zq81"
IMAP_PW = "imap-pw-Kx27"


def _config(tmp_path: Path, mode: int = 0o600, **smtp_extra: object) -> Path:
    doc = {
        "monitor": {"database": "db/flowtui.db", "interval": "2m"},
        "routes": [
            {
                "name": "hq-to-gmail",
                "from": "probe@example.com",
                "to": "probe-rx@example.net",
                "warn": "1m",
                "smtp": {"host": "smtp.example.com", "username": "probe@example.com", "password": SMTP_PW, **smtp_extra},
                "imap": {"host": "imap.example.net", "username": "rx", "password_env": "FLOWTUI_CHECK_IMAP",
                         "junk_folders": ["Junk", "Spam"]},
            },
            {
                "name": "lab",
                "from": "a@example.test",
                "to": "b@example.test",
                "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none"},
                "imap": {"host": "127.0.0.1", "port": 1143, "security": "none", "username": "b",
                         "password_command": f"echo {IMAP_PW}"},
            },
        ],
    }
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(doc))
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWTUI_CHECK_IMAP", IMAP_PW)


def _no_secrets(*texts: str) -> None:
    for text in texts:
        assert SMTP_PW not in text and IMAP_PW not in text
        assert "Traceback" not in text


def test_valid_config_lists_routes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path)
    assert main(["check", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    _no_secrets(out, err)
    assert err == ""
    assert out.splitlines()[0] == f"{path.resolve()}: valid, 2 routes"
    assert f"database {tmp_path.resolve() / 'db' / 'flowtui.db'}" in out
    assert 'route "hq-to-gmail"' in out and 'route "lab"' in out
    assert "probe@example.com -> probe-rx@example.net" in out
    assert "smtp  smtp.example.com:587 starttls  user probe@example.com (password: literal)" in out
    assert "imap  imap.example.net:993 tls  user rx (password: env FLOWTUI_CHECK_IMAP)" in out
    assert "folders INBOX  junk Junk, Spam" in out
    assert "every 2m (jitter 2s), timeout 10m, warn 1m, crit 5m" in out
    # the lab route: no login on SMTP, a command for IMAP, loopback thresholds
    assert "smtp  127.0.0.1:2525 none  no login" in out
    assert "imap  127.0.0.1:1143 none  user b (password: command)" in out
    assert "junk (SPECIAL-USE \\Junk)" in out
    assert "warn 5s, crit 30s" in out


def test_warnings_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, mode=0o644, verify_tls=False)
    assert main(["check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    _no_secrets(out, err)
    lines = err.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("flowtui: warning: ") for line in lines)
    assert "readable by group or others (mode 0644)" in lines[0]
    assert 'route "hq-to-gmail": smtp.verify_tls: certificate verification is off' in lines[1]
    assert "verify_tls=false" in out


def test_invalid_config_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, port="abc")
    assert main(["check", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    _no_secrets(out, err)
    assert out == ""
    assert err == f'flowtui: {path}: route "hq-to-gmail": smtp.port: expected an integer 1-65535, got "abc"\n'


def test_failing_password_source_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWTUI_CHECK_IMAP")
    path = _config(tmp_path)
    assert main(["check", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    _no_secrets(out, err)
    assert err == f'flowtui: {path}: route "hq-to-gmail": imap.password_env: environment variable FLOWTUI_CHECK_IMAP is not set\n'


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-c", str(tmp_path / "absent.toml")]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"flowtui: {tmp_path / 'absent.toml'}: no such file\n")


def test_config_option_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    assert "-c/--config" in capsys.readouterr().err


def test_check_warns_about_a_theme_that_does_not_exist(tmp_path, capsys):
    from flowtui.cli import main

    cfg = tmp_path / "c.toml"
    base = ('[[routes]]\nname = "r"\nfrom = "a@example.com"\nto = "b@example.net"\n'
            '[routes.smtp]\nhost = "127.0.0.1"\n[routes.imap]\nhost = "127.0.0.1"\n')
    cfg.write_text(base + '[ui]\ntheme = "nosuch"\n')
    assert main(["check", "-c", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "ui.theme: no theme named 'nosuch'" in err and "flowtui-light" in err
    for ok in ("light", "flowtui-contrast"):
        cfg.write_text(base + f'[ui]\ntheme = "{ok}"\n')
        assert main(["check", "-c", str(cfg)]) == 0
        assert "ui.theme" not in capsys.readouterr().err
