"""What both labs share: the lab directory, its state file, ports, TLS, lab.toml."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomli_w

from flowtui.core.errors import UserError

LOOPBACK = "127.0.0.1"
STATE_FILE = "lab.json"
CONFIG_FILE = "lab.toml"
MAIL_DOMAIN = "example.test"
PROBE_USER = f"probe@{MAIL_DOMAIN}"  # the route's mailbox, read over IMAP
SENDER_USER = f"sender@{MAIL_DOMAIN}"  # authenticates on hop 1; bounces come back here
MIN_HOPS, MAX_HOPS = 2, 8


@dataclass
class LabState:
    """Everything needed to find and control a running lab; kept in DIR/lab.json."""

    kind: str  # "postfix" or "embedded"
    dir: str
    hops: int
    smtp_ports: list[int]  # one per hop; [0] is the submission hop
    imap_port: int
    imaps_port: int
    passwords: dict[str, str]
    extra: dict[str, int | str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    started: float = 0.0

    def save(self) -> None:
        path = Path(self.dir) / STATE_FILE
        write_private(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, lab_dir: str | os.PathLike[str]) -> LabState:
        path = Path(lab_dir) / STATE_FILE
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError:
            raise UserError(f"{lab_dir}: no lab here (no {STATE_FILE}); start one with 'flowtui lab up --dir {lab_dir}'")
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path}: not a lab state file ({exc})")

    def hop_port(self, hop: int) -> int:
        check_hop(hop, self.hops)
        return self.smtp_ports[hop - 1]


def check_hops(hops: int) -> None:
    if not MIN_HOPS <= hops <= MAX_HOPS:
        raise UserError(f"--hops: {hops} is out of range; a lab has {MIN_HOPS} to {MAX_HOPS} hops")


def check_hop(hop: int, hops: int) -> None:
    if not 1 <= hop <= hops:
        raise UserError(f"HOP {hop}: this lab has hops 1 to {hops} (1 is the submission hop)")


_HELD_LOCKS: list[int] = []  # held until this process ends: one 'lab up' per directory at a time


def prepare_dir(lab_dir: str | os.PathLike[str]) -> Path:
    """Make DIR (absolute), lock it, and refuse to start a lab over anything else.

    DIR must be new, empty, or a lab's directory whose lab is down.
    """
    from flowtui.lab.procs import belongs_to

    path = Path(lab_dir).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: not a directory")
    if path.is_dir() and not (path / STATE_FILE).exists() and any(p.name != ".lab.lock" for p in path.iterdir()):
        raise UserError(f"{path}: the directory is not empty and holds no lab; choose a new or empty directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / ".lab.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the lab directory ({exc.strerror})")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"{path}: another 'flowtui lab up' is starting a lab here")
    _HELD_LOCKS.append(fd)
    if (path / STATE_FILE).exists():
        state = LabState.load(path)
        if any(belongs_to(p, path) for p in state.pids.values()):
            raise UserError(f"{path}: a lab already runs here; 'flowtui lab down --dir {lab_dir}' first")
    return path


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that are free now: all bound at once so none repeats."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_answers(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports(ports: dict[str, int], timeout: float = 20.0, banner: bool = True) -> None:
    """Return when every port accepts a connection (and greets, with ``banner``)."""
    deadline = time.monotonic() + timeout
    pending = dict(ports)
    while pending:
        for name, port in list(pending.items()):
            if _greets(port) if banner else port_answers(port):
                del pending[name]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(f"{n} (127.0.0.1:{p})" for n, p in pending.items())
            raise UserError(f"lab: did not answer within {timeout:.0f}s: {names}")
        time.sleep(0.05)


def _greets(port: int) -> bool:
    """True when the server sends its first line (SMTP 220 / IMAP * OK)."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as s:
            s.settimeout(2.0)
            return bool(s.recv(64))
    except OSError:
        return False


def wait_port_closed(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_answers(port, timeout=0.2):
            return True
        time.sleep(0.05)
    return False


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is as good as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def new_password() -> str:
    return secrets.token_urlsafe(12)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it may hold lab passwords)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def make_certificate(tls_dir: Path) -> tuple[Path, Path] | None:
    """A self-signed certificate for localhost / 127.0.0.1, made with openssl.

    Returns (cert, key), or None when openssl is not installed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    tls_dir.mkdir(parents=True, exist_ok=True)
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    return cert, key


def write_lab_config(state: LabState, tls: bool, interval: str = "10s", timeout: str = "60s") -> Path:
    """Write DIR/lab.toml: a flowtui config with one route through the whole chain."""
    smtp: dict[str, object] = {
        "host": LOOPBACK,
        "port": state.smtp_ports[0],
        "security": "starttls" if tls else "none",
        "username": SENDER_USER,
        "password": state.passwords[SENDER_USER],
        "verify_tls": True,
    }
    imap: dict[str, object] = {
        "host": LOOPBACK,
        "port": state.imaps_port if tls else state.imap_port,
        "security": "tls" if tls else "none",
        "username": PROBE_USER,
        "password": state.passwords[PROBE_USER],
        "verify_tls": True,
        "folders": ["INBOX"],
        "junk_folders": ["Junk"],
    }
    if tls:
        smtp["ca_file"] = imap["ca_file"] = "tls/cert.pem"
    doc = {
        "monitor": {"database": "flowtui.db", "interval": interval, "timeout": timeout},
        "routes": [
            {
                "name": f"lab-{state.kind}-{state.hops}hop",
                "interval": interval,
                "timeout": timeout,
                "from": SENDER_USER,
                "to": PROBE_USER,
                "smtp": smtp,
                "imap": imap,
            }
        ],
    }
    header = (
        f"# flowtui config for the {state.kind} lab in {state.dir}\n"
        f"# written by 'flowtui lab up'; holds the lab's literal passwords (mode 0600).\n"
    )
    path = Path(state.dir) / CONFIG_FILE
    write_private(path, header + tomli_w.dumps(doc))
    return path


def describe(state: LabState) -> str:
    chain = " -> ".join(f"hop{i + 1} :{p}" for i, p in enumerate(state.smtp_ports))
    return (
        f"{state.kind} lab up in {state.dir}\n"
        f"  smtp  {chain} -> mailbox\n"
        f"  imap  127.0.0.1:{state.imap_port}   imaps 127.0.0.1:{state.imaps_port}\n"
        f"  users {SENDER_USER} (submission), {PROBE_USER} (mailbox); passwords in lab.toml\n"
        f"  config {Path(state.dir) / CONFIG_FILE}"
    )
