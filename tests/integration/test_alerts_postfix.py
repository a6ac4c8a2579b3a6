"""Alerts against the real Postfix + Dovecot lab: a held hop, a stopped hop, a restart."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from conftest import need_real_mail
from flowtui.core.config import load_config
from flowtui.core.events import AlertRaised, AlertResolved
from flowtui.core.model import ProbeState
from flowtui.core.storage import Store
from integration.labproc import flowtui
from integration.test_engine_postfix import lab, write_config  # noqa: F401 - the module-scoped lab fixture
from mail import running_engine

pytestmark = pytest.mark.realmail


async def _run(cfg, body):
    config = load_config(cfg)
    async with running_engine(config, alerting=True) as (engine, events):
        return await body(engine, config, events)


def _alert_events(events) -> list[tuple[str, str, str]]:
    out = []
    for ev in events.drain():
        if isinstance(ev, AlertRaised):
            out.append(("escalated" if ev.escalated else "fired", ev.alert.rule, ev.alert.id))
        elif isinstance(ev, AlertResolved):
            out.append(("resolved", ev.alert.rule, ev.alert.id))
    return out


def test_held_hop_fires_latency_then_lost_release_resolves_both(lab, tmp_path):  # noqa: F811
    need_real_mail()
    cfg = write_config(lab, "alerts-held.toml", str(tmp_path / "a.db"), warn="3s", crit="4s", timeout="6s")
    assert flowtui("lab", "hold", "--dir", lab.dir, "2").returncode == 0

    async def body(engine, config, events):
        route = config.routes[0]
        try:
            lost = await engine.probe_once(route)
            assert lost.state is ProbeState.LOST
            await asyncio.sleep(0.5)
            during = _alert_events(events)
        finally:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "flowtui", "lab", "release", "--dir", lab.dir, "2")
            await proc.wait()
        after = []
        for _ in range(3):  # a loaded machine can make the first probe after the release slow (>= warn 3 s)
            ok = await engine.probe_once(route, timeout=20)
            await asyncio.sleep(0.5)
            after += _alert_events(events)
            if ok.total_s is not None and ok.total_s < 3:
                break
        return lost, ok, during, after

    lost, ok, during, after = asyncio.run(_run(cfg, body))
    fired = [(k, r) for k, r, _ in during if k == "fired"]
    assert fired == [("fired", "latency"), ("fired", "lost")], during  # each once, latency first
    assert ("escalated", "latency") in [(k, r) for k, r, _ in during]
    assert ok.state is ProbeState.DELIVERED
    resolved = {r: i for k, r, i in after if k == "resolved"}
    assert set(resolved) == {"latency", "lost"}, after
    assert not [e for e in after if e[0] == "fired"]
    with Store(tmp_path / "a.db") as store:
        stored = {a.rule: a for a in store.alerts()}
    assert {r: (a.state, a.severity) for r, a in stored.items()} == {"latency": ("resolved", "crit"), "lost": ("resolved", "crit")}
    assert stored["lost"].id == resolved["lost"] and stored["lost"].resolved_at > stored["lost"].fired_at


def test_stopped_hop_fires_send_failed_once_across_a_restart(lab, tmp_path):  # noqa: F811
    need_real_mail()
    cfg = write_config(lab, "alerts-stop.toml", str(tmp_path / "b.db"))

    async def failing(engine, config, events):
        r = await engine.probe_once(config.routes[0])
        await asyncio.sleep(0.3)
        return r, _alert_events(events)

    assert flowtui("lab", "stop", "--dir", lab.dir, "1").returncode == 0
    try:
        r1, first = asyncio.run(_run(cfg, failing))
        r2, second = asyncio.run(_run(cfg, failing))  # the monitor restarted in the middle
    finally:
        assert flowtui("lab", "start", "--dir", lab.dir, "1").returncode == 0
    assert r1.state is ProbeState.SEND_FAILED and r2.state is ProbeState.SEND_FAILED
    assert [(k, r) for k, r, _ in first] == [("fired", "send_failed")]
    assert second == []  # still firing: not fired again

    async def delivering(engine, config, events):
        r = await engine.probe_once(config.routes[0], timeout=20)
        await asyncio.sleep(0.3)
        return r, _alert_events(events)

    r3, third = asyncio.run(_run(cfg, delivering))
    assert r3.state is ProbeState.DELIVERED
    assert third == [("resolved", "send_failed", first[0][2])]

    out = flowtui("alerts", "-c", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [(a["rule"], a["state"], a["id"]) for a in listed] == [("send_failed", "resolved", first[0][2])]
    assert "connect" in listed[0]["message"] and listed[0]["resolved_at"] > listed[0]["fired_at"]
    firing = flowtui("alerts", "-c", str(cfg), "--firing")
    assert firing.returncode == 0 and "no alerts firing" in firing.stdout


def test_headless_prints_the_alert_line(lab, tmp_path):  # noqa: F811
    import subprocess
    import time

    need_real_mail()
    cfg = write_config(lab, "alerts-headless.toml", str(tmp_path / "c.db"), interval="1h")
    assert flowtui("lab", "stop", "--dir", lab.dir, "1").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "flowtui", "run", "--headless", "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with Store(tmp_path / "c.db") as store:
                if store.alerts(state="fired"):
                    break
            time.sleep(0.3)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
        assert flowtui("lab", "start", "--dir", lab.dir, "1").returncode == 0
    lines = out.splitlines()
    assert any(" send_failed at connect" in ln for ln in lines), out
    alert = [ln for ln in lines if " ALERT FIRED CRIT " in ln]
    assert len(alert) == 1 and " send_failed: #1 send failed at connect" in alert[0], out
    assert proc.returncode == 0 and "Traceback" not in err
