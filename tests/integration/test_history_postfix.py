"""Issue 7 on a real Postfix + Dovecot lab: the Prometheus endpoint of a running
headless monitor, then `flowtui report --format json` and `flowtui export` on
the database it wrote, checked against the probes that ran and its rows."""

from __future__ import annotations

import json
import math
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import tomli_w
from prometheus_client.parser import text_string_to_metric_families

from conftest import need_real_mail
from flowtui.lab import postfix
from integration.labproc import flowtui

pytestmark = pytest.mark.realmail


def exact_pct(values, p):
    data = sorted(values)
    rank = (len(data) - 1) * p / 100
    lo = int(math.floor(rank))
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def _pump(stream, q):
    for line in stream:
        q.put(line)
    q.put(None)


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_scrape_then_report_and_export_match_the_probes(lab_dir, tmp_path):
    need_real_mail()
    state = postfix.up(str(lab_dir), 2)
    try:
        doc = tomllib.loads((Path(state.dir) / "lab.toml").read_text())
        db = tmp_path / "hist.db"
        doc["monitor"]["database"] = str(db)
        doc["routes"][0].update(interval="2s", timeout="1m")
        route = doc["routes"][0]["name"]
        passwords = [doc["routes"][0]["smtp"]["password"], doc["routes"][0]["imap"]["password"]]
        cfg = Path(state.dir) / "hist.toml"  # relative paths in lab.toml (the CA file) stay right
        cfg.write_text(tomli_w.dumps(doc))
        cfg.chmod(0o600)

        # a bad address is one line, before anything starts
        bad = flowtui("run", "--headless", "-c", str(cfg), "--metrics", "127.0.0.1:notaport")
        assert bad.returncode == 2 and bad.stderr.startswith("flowtui: --metrics:") and bad.stderr.count("\n") == 1

        proc = subprocess.Popen(
            [sys.executable, "-m", "flowtui", "run", "--headless", "--json", "-c", str(cfg),
             "--metrics", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        out_q: queue.Queue = queue.Queue()
        err_q: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, out_q), daemon=True).start()
        threading.Thread(target=_pump, args=(proc.stderr, err_q), daemon=True).start()
        err_lines, results = [], []
        try:
            url = None
            deadline = time.monotonic() + 30
            while url is None and time.monotonic() < deadline:
                line = err_q.get(timeout=30)
                assert line is not None, "".join(err_lines)
                err_lines.append(line)
                if "metrics on " in line:
                    url = line.split("metrics on ", 1)[1].strip()
            assert url and url.startswith("http://127.0.0.1:")
            deadline = time.monotonic() + 120
            while sum(r["state"] == "delivered" for r in results) < 6 and time.monotonic() < deadline:
                try:
                    line = out_q.get(timeout=1)
                except queue.Empty:
                    continue
                assert line is not None, "".join(err_lines)
                results.append(json.loads(line))
            samples = scrape(url)
            # the monitor counts a result before it prints it: read on until every counted one is printed
            counted = {dict(k[1])["state"]: v for k, v in samples.items()
                       if k[0] == "flowtui_probe_results_total" and dict(k[1])["route"] == route}
            deadline = time.monotonic() + 30
            while any(sum(r["state"] == s for r in results) < n for s, n in counted.items()):
                assert time.monotonic() < deadline, (counted, results)
                line = out_q.get(timeout=30)
                assert line is not None
                results.append(json.loads(line))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
        while (line := err_q.get(timeout=10)) is not None:
            err_lines.append(line)
        assert proc.returncode == 0 and "Traceback" not in "".join(err_lines), "".join(err_lines)

        # the counters and histograms hold exactly the first results printed
        assert counted.get("delivered", 0) >= 6
        key = ("route", route)
        n_total = samples[("flowtui_probe_total_seconds_count", (key,))]
        arrived = [r for r in results if r["state"] in ("delivered", "late")][: int(n_total)]
        assert n_total == sum(counted.get(s, 0) for s in ("delivered", "late"))
        assert samples[("flowtui_probe_total_seconds_sum", (key,))] == pytest.approx(sum(r["total_s"] for r in arrived))
        assert samples[("flowtui_probe_transit_seconds_sum", (key,))] == pytest.approx(
            sum(r["transit_s"] for r in arrived))
        inf = samples[("flowtui_probe_total_seconds_bucket", (("le", "+Inf"), key))]
        assert inf == n_total
        ten = samples[("flowtui_probe_total_seconds_bucket", (("le", "10.0"), key))]
        assert ten == sum(r["total_s"] <= 10.0 for r in arrived)
        assert samples[("flowtui_probe_hops", (key,))] >= 3
        assert samples[("flowtui_last_delivery_timestamp_seconds", (key,))] == pytest.approx(
            max(r["detected_at"] for r in arrived))

        # the report on the database the run wrote: the same percentiles as a direct computation
        rep = flowtui("report", "-c", str(cfg), "--since", "1h", "--format", "json")
        assert rep.returncode == 0, rep.stderr
        report = json.loads(rep.stdout)
        mine = next(r for r in report["sections"][0]["routes"] if r["route"] == route)
        assert mine["source"] == "raw" and mine["exact"]
        conn = sqlite3.connect(db)
        # the running monitor did its roll-up round (nothing closed yet: the watermark only)
        assert conn.execute("SELECT value FROM rollup_state WHERE key = 'hourly_until'").fetchone() is not None
        rows = conn.execute("SELECT state, submit_s, transit_s, total_s FROM probes WHERE route = ?",
                            (route,)).fetchall()
        assert mine["sent"] == len(rows) and mine["delivered"] == sum(r[0] == "delivered" for r in rows)
        got = {"submit": [r[1] for r in rows if r[1] is not None],
               "transit": [r[2] for r in rows if r[0] in ("delivered", "late")],
               "total": [r[3] for r in rows if r[0] in ("delivered", "late")]}
        for m, values in got.items():
            for p in (50, 90, 99):
                assert mine[m][f"p{p}"] == exact_pct(values, p), (m, p)
            assert mine[m]["max"] == max(values)
        hop_rows = conn.execute("SELECT h.idx, h.by_host, h.delay_s, h.tls FROM hops h JOIN probes p "
                                "USING (probe_id) WHERE p.route = ?", (route,)).fetchall()
        assert mine["tls"]["hops"] == len(hop_rows)
        slowest = mine["slowest_hop"]
        delays = [r[2] for r in hop_rows if f"{r[0]}:{r[1] or '?'}" == slowest["hop"] and r[2] is not None]
        assert slowest["median_s"] == exact_pct(delays, 50)
        assert sum(p["count"] for p in report["sections"][1]["routes"][route]) == len(rows)

        exp = flowtui("export", "-c", str(cfg), "--since", "1h", "--format", "jsonl")
        assert exp.returncode == 0, exp.stderr
        lines = [json.loads(x) for x in exp.stdout.splitlines()]
        assert len(lines) == len(rows)
        assert sum(len(x["hops"]) for x in lines) == len(hop_rows)
        for secret in passwords:
            assert secret not in exp.stdout and secret not in rep.stdout
    finally:
        postfix.down(str(lab_dir))
