"""Reverse DNS of DMARC report sources through dnspython, against dnsmasq on loopback."""

from __future__ import annotations

import time

from flowtui.core.dmarc.importer import import_bytes
from flowtui.core.dmarc.rdns import dns_lookup, resolve_missing
from flowtui.core.storage import Store
from integration.dmarclab import report_xml
from integration.test_dns_alerts import dnsmasq  # noqa: F401 - the fixture


def test_ptr_names_are_resolved_once_and_cached(dnsmasq, tmp_path):  # noqa: F811
    dnsmasq.serve([
        "ptr-record=10.2.0.192.in-addr.arpa,mx1.example.test",
        "local=/2.0.192.in-addr.arpa/",
    ])
    lookup = dns_lookup((("127.0.0.1", dnsmasq.port),), timeout_s=2.0)
    with Store(tmp_path / "r.db") as store:
        import_bytes(store, "a", report_xml("r1", [("192.0.2.10", 5, "pass", "pass"), ("192.0.2.99", 1, "fail", "fail")]))
        t0 = time.monotonic()
        found = resolve_missing(store, ["192.0.2.10", "192.0.2.99"], lookup)
        assert found == {"192.0.2.10": "mx1.example.test", "192.0.2.99": None}
        assert time.monotonic() - t0 < 5
        dnsmasq.stop()  # cached: no resolver needed any more
        assert resolve_missing(store, ["192.0.2.10", "192.0.2.99"], lookup) == {}
        rows = store.read(lambda c: c.execute("SELECT ip, name, error FROM dmarc_rdns ORDER BY ip").fetchall())
        assert [tuple(r) for r in rows] == [("192.0.2.10", "mx1.example.test", None), ("192.0.2.99", None, None)]


def test_report_command_resolves_with_the_configured_nameserver(dnsmasq, tmp_path):  # noqa: F811
    import subprocess
    import sys

    dnsmasq.serve(["ptr-record=10.2.0.192.in-addr.arpa,mx1.example.test", "local=/2.0.192.in-addr.arpa/"])
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[monitor]\ndatabase = "d.db"\n[[routes]]\nname = "r"\nfrom = "a@example.com"\nto = "b@example.com"\n'
        '[routes.smtp]\nhost = "127.0.0.1"\n[routes.imap]\nhost = "127.0.0.1"\n'
        f'[dns]\nnameservers = ["127.0.0.1:{dnsmasq.port}"]\ntimeout = "2s"\n'
    )
    report = tmp_path / "r.xml"
    report.write_bytes(report_xml("cli-1", [("192.0.2.10", 5, "pass", "pass")]))
    run = lambda *a: subprocess.run([sys.executable, "-m", "flowtui", "dmarc", *a], capture_output=True, text=True)  # noqa: E731
    assert run("import", "-c", str(cfg), str(report)).returncode == 0
    p = run("report", "-c", str(cfg))
    assert "192.0.2.10" in p.stdout and "mx1.example.test" not in p.stdout  # cached names only
    p = run("report", "-c", str(cfg), "--rdns")
    assert p.returncode == 0, p.stderr
    assert "mx1.example.test" in p.stdout
