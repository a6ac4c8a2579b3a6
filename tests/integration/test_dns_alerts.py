"""DNS record checks against a real dnsmasq on loopback (Debian's dnsmasq-base)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import IN_CI
from flowtui.core.alerts import AlertBook
from flowtui.core.dnscheck import DnsChecker
from flowtui.core.model import AlertRule, DnsSettings

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
D = "example.test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dnsmasq:
    def __init__(self, tmp: Path) -> None:
        if not os.path.exists(DNSMASQ):
            if IN_CI:
                pytest.fail("CI=true and dnsmasq is not installed (.ci/run installs dnsmasq-base)")
            pytest.skip("dnsmasq not installed (apt-get install dnsmasq-base)")
        self.conf = tmp / "dnsmasq.conf"
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    def serve(self, lines: list[str]) -> None:
        self.stop()
        self.conf.write_text("\n".join(lines + [f"local=/{D}/"]) + "\n")
        self.proc = subprocess.Popen([
            DNSMASQ, "--keep-in-foreground", f"--port={self.port}", "--listen-address=127.0.0.1",
            "--bind-interfaces", "--no-resolv", "--no-hosts", f"--conf-file={self.conf}", "--pid-file=",
            "--user=" + ("root" if os.geteuid() == 0 else ""),
        ], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited: {self.proc.stderr.read().decode()}")
            probe = subprocess.run(["python3", "-c", f"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                                    f"s.settimeout(0.2);s.sendto(bytes.fromhex('123401000001000000000000076578616d706c65047465737400000f0001'),('127.0.0.1',{self.port}));s.recv(512)"],
                                   capture_output=True)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("dnsmasq did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def dnsmasq(tmp_path):
    d = Dnsmasq(tmp_path)
    yield d
    d.stop()


GOOD = [
    f"mx-host={D},mx1.{D},10",
    f'txt-record={D},"v=spf1 ip4:127.0.0.1 -all"',
    f'txt-record=_dmarc.{D},"v=DMARC1; p=reject; rua=mailto:d@{D}"',
]


def _checker(port: int, timeout: float = 2.0) -> DnsChecker:
    settings = DnsSettings(domains=(D,), records=("MX", "SPF", "DMARC"), nameservers=(("127.0.0.1", port),), timeout_s=timeout)
    return DnsChecker(settings)


def _round(book: AlertBook, checker: DnsChecker, now: float) -> list[str]:
    obs = asyncio.run(checker.check_all())
    out = []
    for o in obs:
        for t in book.observe_dns(o, now):
            out.append(f"{t.kind} {t.alert.id.rsplit('|', 1)[0].split('|', 1)[1]}")
    return sorted(out)


def test_records_are_read_and_changes_fire_the_right_alerts(dnsmasq):
    dnsmasq.serve(GOOD)
    checker = _checker(dnsmasq.port)
    obs = {o.kind: o for o in asyncio.run(checker.check_all())}
    assert obs["MX"].value == f"10 mx1.{D}." and obs["MX"].error is None
    assert obs["SPF"].value == "v=spf1 ip4:127.0.0.1 -all" and obs["SPF"].invalid is None and obs["SPF"].lookups == 0
    assert obs["DMARC"].value.startswith("v=DMARC1; p=reject")
    book = AlertBook((AlertRule(name="dns", kind="dns"),), {})
    for o in obs.values():
        assert book.observe_dns(o, 0.0) == []

    # the MX moves, DMARC goes away, SPF grows a bad term
    dnsmasq.serve([f"mx-host={D},mx2.{D},10", f'txt-record={D},"v=spf1 ip4:127.0.0.1 bogus -all"'])
    assert _round(book, checker, 60.0) == sorted([
        f"fired {D}/MX changed", f"fired {D}/DMARC missing", f"fired {D}/SPF changed", f"fired {D}/SPF invalid",
    ])
    # an SPF record that needs more than 10 look-ups: 4 includes + 4 x (a, mx, include) + 4 x a = 20
    incs = [f'txt-record=i{i}.{D},"v=spf1 a mx include:j{i}.{D} -all"' for i in range(4)]
    incs += [f'txt-record=j{i}.{D},"v=spf1 a -all"' for i in range(4)]
    spf = " ".join(f"include:i{i}.{D}" for i in range(4))
    dnsmasq.serve(GOOD[:1] + [f'txt-record={D},"v=spf1 {spf} -all"', GOOD[2]] + incs)
    got = _round(book, checker, 120.0)
    assert f"fired {D}/SPF lookups" in got and f"resolved {D}/SPF invalid" in got
    assert f"resolved {D}/DMARC missing" in got
    msg = [t for t in book.firing.values() if t.record.id.startswith(f"dns|{D}/SPF lookups")][0].record.message
    assert "needs 20 DNS look-ups" in msg

    dnsmasq.serve(GOOD)
    got = _round(book, checker, 180.0)
    assert f"resolved {D}/SPF lookups" in got


def test_an_unreachable_resolver_is_an_alert_not_a_crash(dnsmasq):
    dnsmasq.serve(GOOD)
    checker = _checker(dnsmasq.port, timeout=0.5)
    book = AlertBook((AlertRule(name="dns", kind="dns"),), {})
    assert _round(book, checker, 0.0) == []
    dnsmasq.stop()  # nothing answers on that port now
    t0 = time.monotonic()
    got = _round(book, checker, 60.0)
    assert time.monotonic() - t0 < 3
    assert got == sorted(f"fired {D}/{k} unreachable" for k in ("MX", "SPF", "DMARC"))
    dnsmasq.serve(GOOD)
    assert _round(book, checker, 120.0) == sorted(f"resolved {D}/{k} unreachable" for k in ("MX", "SPF", "DMARC"))
