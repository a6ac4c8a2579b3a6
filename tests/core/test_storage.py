"""The SQLite store, against a real file in tmp_path (never a mock)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sqlite3
import stat
import statistics
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from flowtui.core.model import (
    AuthResults,
    Bounce,
    Hop,
    ImapSettings,
    MethodResult,
    ProbeResult,
    ProbeState,
    Route,
    Secret,
    Security,
    ServerSettings,
)
from flowtui.core.stats import percentile
from flowtui.core.storage import (
    SCHEMA_VERSION,
    AlertRecord,
    DnsCheckRecord,
    Store,
    StoreClosed,
    StoreError,
)

UTC = timezone.utc
DKIM_PROPS = (("header.d", "example.org"), ("header.s", "s1"))


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("flowtui-store-writer")]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "flowtui.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


def _pending(i: int, route: str = "r1", sent_at: float | None = None) -> ProbeResult:
    return ProbeResult(
        route=route,
        probe_id=f"{route}-p{i}",
        seq=i,
        state=ProbeState.PENDING,
        sent_at=1_700_000_000.0 + i * 60 if sent_at is None else sent_at,
        submit_s=0.8,
        queue_id=f"Q{i}",
        message_id=f"<{route}-p{i}@flowtui>",
        phases=(("connect", 0.05), ("tls", 0.2), ("auth", 0.4), ("data_accepted", 0.8)),
    )


def _delivered(p: ProbeResult, total: float = 4.25) -> ProbeResult:
    t0 = datetime.fromtimestamp(p.sent_at, UTC).replace(microsecond=0)
    hops = (
        Hop(
            index=0,
            from_host="client.example",
            from_ip="192.0.2.7",
            by_host="submit.example.org",
            with_protocol="ESMTPSA",
            id="4Xy1",
            for_addr="probe@example.net",
            envelope_from="mon@example.org",
            tls=True,
            timestamp=t0,
            delay_s=None,
            raw="from client.example ([192.0.2.7]) by submit.example.org with ESMTPSA id 4Xy1",
        ),
        Hop(
            index=1,
            from_host="submit.example.org",
            from_rdns="submit.example.org",
            from_ip="198.51.100.2",
            by_host="mx.example.net",
            with_protocol="ESMTPS",
            via=None,
            tls=False,
            # a foreign clock in +02:00: read back as the same instant in UTC
            timestamp=(t0 + timedelta(seconds=2)).astimezone(timezone(timedelta(hours=2))),
            delay_s=2.0,
            raw="from submit.example.org by mx.example.net with ESMTPS",
        ),
    )
    auth = AuthResults(
        authserv_id="mx.example.net",
        spf=MethodResult("spf", "pass", properties=(("smtp.mailfrom", "example.org"),)),
        dkim=MethodResult("dkim", "pass", reason="good sig", properties=DKIM_PROPS),
        dmarc=MethodResult("dmarc", "fail", reason="policy", comment="p=none"),
        results=(
            MethodResult("spf", "pass", properties=(("smtp.mailfrom", "example.org"),)),
            MethodResult("dkim", "pass", reason="good sig", properties=DKIM_PROPS),
            MethodResult("dmarc", "fail", reason="policy", comment="p=none"),
        ),
        warnings=("two headers, used the top one",),
    )
    return dataclasses.replace(
        p,
        state=ProbeState.DELIVERED,
        transit_s=total - 0.8,
        total_s=total,
        detected_at=p.sent_at + total,
        detect_uncertainty_s=0.01,
        folder="INBOX",
        phases=p.phases + (("detected", total),),
        hops=hops,
        auth=auth,
        content_ok=True,
    )


# --- the file -----------------------------------------------------------------


def test_file_is_private_and_in_wal_mode(store: Store, db_path: Path) -> None:
    store.write_result(_pending(1))
    store.flush_sync()
    for name in ("flowtui.db", "flowtui.db-wal", "flowtui.db-shm"):
        mode = stat.S_IMODE((db_path.parent / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700  # created by the store
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"routes", "probes", "hops", "alerts", "dns_checks"} <= tables
        plan = " ".join(
            str(r[-1])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM probes WHERE route = ? ORDER BY sent_at DESC LIMIT 60", ("r1",)
            )
        )
        assert "probes_route_sent" in plan
        plan = " ".join(
            str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM probes WHERE state = 'pending'")
        )
        assert "probes_state_sent" in plan
    finally:
        conn.close()


def test_existing_file_keeps_data_and_a_newer_schema_is_refused(db_path: Path) -> None:
    with Store(db_path) as s:
        s.write_result(_pending(1))
    with Store(db_path) as s:  # reopening does not migrate again or lose rows
        assert s.probe("r1-p1") is not None
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store(db_path)
    assert _writer_threads() == []


# --- probes -------------------------------------------------------------------


def test_delivered_probe_round_trips_with_hops_auth_and_phases(store: Store) -> None:
    original = _delivered(_pending(1))
    store.write_result(original)
    store.flush_sync()
    back = store.probe("r1-p1")
    assert back == original
    assert back is not None
    assert all(h.timestamp is not None and h.timestamp.utcoffset() == timedelta(0) for h in back.hops)
    assert back.auth is not None and back.auth.dkim is not None
    assert back.auth.dkim.prop("header.s") == "s1"
    assert isinstance(back.phases, tuple) and back.phases[-1] == ("detected", 4.25)
    assert store.probe("nope") is None


def test_bounced_probe_round_trips(store: Store) -> None:
    bounced = dataclasses.replace(
        _pending(2),
        state=ProbeState.BOUNCED,
        error="550 5.1.1 user unknown",
        error_phase="delivery",
        bounce=Bounce(
            kind="dsn",
            action="failed",
            status="5.1.1",
            diagnostic="smtp; 550 5.1.1 user unknown",
            recipient="probe@example.net",
            reporting_mta="mx.example.net",
            original_message_id="<r1-p2@flowtui>",
            warnings=("no Remote-MTA",),
        ),
        content_ok=False,
    )
    store.write_result(bounced)
    store.flush_sync()
    assert store.probe("r1-p2") == bounced


def test_upsert_moves_a_probe_through_its_states_and_replaces_hops(store: Store, db_path: Path) -> None:
    p = _pending(1)
    store.write_result(p)
    store.flush_sync()
    assert store.probe(p.probe_id) == p

    lost = dataclasses.replace(p, state=ProbeState.LOST, error="not seen within 600s")
    store.write_result(lost)
    store.flush_sync()
    assert store.probe(p.probe_id) == lost

    late = dataclasses.replace(_delivered(p, total=900.0), state=ProbeState.LATE)
    store.write_result(late)
    store.flush_sync()
    assert store.probe(p.probe_id) == late

    fewer = dataclasses.replace(late, hops=late.hops[:1])
    store.write_result(fewer)
    store.flush_sync()
    assert store.probe(p.probe_id) == fewer

    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM probes").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM hops").fetchone()[0] == 1
    finally:
        conn.close()


def test_same_probe_twice_in_one_batch_last_write_wins(store: Store) -> None:
    p = _pending(1)
    d = _delivered(p)
    store.write_result(p)
    store.write_result(d)
    store.write_result(_pending(2))
    store.flush_sync()
    assert store.probe(p.probe_id) == d
    assert [r.probe_id for r in store.last_probes("r1")] == ["r1-p1", "r1-p2"]


def test_pending_probes_and_next_seq_survive_a_restart(db_path: Path) -> None:
    s = Store(db_path)
    s.write_result(_delivered(_pending(1)))
    s.write_result(_pending(2))
    s.write_result(dataclasses.replace(_pending(3), state=ProbeState.LOST))
    s.write_result(dataclasses.replace(_pending(4), state=ProbeState.SEND_FAILED, error="connection refused"))
    s.write_result(_pending(5))
    s.write_result(_pending(1, route="r2"))
    s.close()  # no flush: close must commit what was queued

    s2 = Store(db_path)  # the restarted monitor
    try:
        pending = s2.pending_probes()
        # oldest first; r2-p1 was sent at the time of r1-p1, before r1-p2
        assert [(r.probe_id, r.state) for r in pending] == [
            ("r2-p1", ProbeState.PENDING),
            ("r1-p2", ProbeState.PENDING),
            ("r1-p3", ProbeState.LOST),
            ("r1-p5", ProbeState.PENDING),
        ]
        assert pending[1] == _pending(2)
        since = _pending(3).sent_at
        assert {r.probe_id for r in s2.pending_probes(since=since)} == {"r1-p3", "r1-p5"}
        assert s2.next_seq("r1") == 6
        assert s2.next_seq("r2") == 2
        assert s2.next_seq("never-probed") == 1
    finally:
        s2.close()


def test_last_probes_newest_last_and_limited(store: Store) -> None:
    for i in range(1, 101):
        store.write_result(_pending(i))
    store.write_result(_pending(1, route="other"))
    store.flush_sync()
    last = store.last_probes("r1", n=60)
    assert [r.seq for r in last] == list(range(41, 101))
    assert all(r.hops == () for r in last)
    store.write_result(_delivered(_pending(100)))
    store.flush_sync()
    assert len(store.last_probes("r1", n=1, with_hops=True)[0].hops) == 2
    assert store.last_probes("r1", n=1)[0].hops == ()
    assert store.last_probes("missing") == []


def test_window_stats_against_an_independent_computation(store: Store) -> None:
    totals = [3.1, 4.7, 2.2, 9.9, 5.5, 6.0, 4.4, 120.0, 3.3, 7.7, 2.8, 5.0]
    base = 1_700_000_000.0
    for i, total in enumerate(totals):
        store.write_result(_delivered(_pending(i, sent_at=base + i * 60), total=total))
    store.write_result(dataclasses.replace(_pending(100, sent_at=base + 2000), state=ProbeState.LOST))
    late = _delivered(_pending(101, sent_at=base + 2100), total=700.0)
    store.write_result(dataclasses.replace(late, state=ProbeState.LATE))
    store.write_result(_pending(102, sent_at=base + 2200))
    # outside the window, and another route: both left out
    store.write_result(_delivered(_pending(103, sent_at=base - 10), total=1000.0))
    store.write_result(_delivered(_pending(0, route="r2", sent_at=base + 5), total=1000.0))
    store.flush_sync()

    ws = store.window_stats("r1", since=base)
    arrived = totals + [700.0]
    cuts = statistics.quantiles(arrived, n=100, method="inclusive")
    assert ws["count"] == len(totals) + 3
    assert ws["pending"] == 1
    assert ws["delivered"] == len(totals)
    assert ws["lost"] == 1 and ws["late"] == 1
    assert ws["loss_ratio"] == pytest.approx(1 / (len(totals) + 2))
    assert ws["p50"] == pytest.approx(statistics.median(arrived))
    assert ws["p95"] == pytest.approx(cuts[94])
    assert ws["p99"] == pytest.approx(cuts[98])
    assert ws["p95"] == percentile(arrived, 95)
    empty = store.window_stats("r1", since=base + 10_000)
    assert empty["count"] == 0 and empty["p50"] is None and empty["loss_ratio"] is None


# --- the writer ---------------------------------------------------------------


def test_five_thousand_writes_are_batched_and_all_present(store: Store, db_path: Path) -> None:
    n = 5000
    for i in range(n):
        store.write_result(_pending(i))
    store.flush_sync(timeout=10)
    assert store.commits < n / 10  # many rows per transaction
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM probes").fetchone()[0] == n
    finally:
        conn.close()
    assert store.next_seq("r1") == n


async def test_async_flush_and_reads_from_worker_threads(store: Store) -> None:
    for i in range(1, 11):
        store.write_result(_pending(i))
    await store.flush()
    results = await asyncio.gather(*(asyncio.to_thread(store.last_probes, "r1", 5) for _ in range(8)))
    assert all([r.seq for r in res] == [6, 7, 8, 9, 10] for res in results)


def test_close_drains_and_joins_the_writer(db_path: Path) -> None:
    before = set(threading.enumerate())
    s = Store(db_path)
    assert len(_writer_threads()) == 1
    for i in range(300):
        s.write_result(_pending(i))
    s.probe("r1-p0")  # opens a reader connection in this thread
    s.close()
    assert _writer_threads() == []
    assert set(threading.enumerate()) == before
    s.close()  # idempotent
    with pytest.raises(StoreClosed):
        s.write_result(_pending(1))
    with pytest.raises(StoreClosed):
        s.probe("r1-p0")
    # everything queued before close() was committed, and every connection closed
    assert not (db_path.parent / "flowtui.db-wal").exists()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM probes").fetchone()[0] == 300
    finally:
        conn.close()


def test_a_bad_write_is_dropped_and_counted_the_rest_committed(store: Store) -> None:
    bad = dataclasses.replace(_pending(2), state="no-such-state")  # type: ignore[arg-type]
    store.write_result(_pending(1))
    store.write_result(bad)
    store.write_result(_pending(3))
    store.flush_sync()
    assert store.write_errors == 1
    assert [r.seq for r in store.last_probes("r1")] == [1, 3]


def test_prune_deletes_old_history(store: Store, db_path: Path) -> None:
    base = 1_700_000_000.0
    for i in range(10):
        store.write_result(_delivered(_pending(i, sent_at=base + i * 100)))
    store.write_alert(AlertRecord("a-old", "r1", "lost", "crit", "resolved", base, resolved_at=base + 50))
    store.write_alert(AlertRecord("a-firing", "r1", "lost", "crit", "fired", base))
    store.write_dns_check(DnsCheckRecord("example.org", "MX", base, "10 mx.example.org."))
    store.write_dns_check(DnsCheckRecord("example.org", "MX", base + 900, "10 mx.example.org."))
    deleted = store.prune(base + 500).result(timeout=5)
    assert deleted == 5
    assert [r.seq for r in store.last_probes("r1")] == [5, 6, 7, 8, 9]
    assert {a.id for a in store.alerts()} == {"a-firing"}  # a firing alert is kept
    assert [c.checked_at for c in store.dns_checks("example.org", "MX", n=10)] == [base + 900]
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM hops").fetchone()[0] == 5 * 2
    finally:
        conn.close()


# --- routes, alerts, DNS ------------------------------------------------------


def _route(password: str) -> Route:
    return Route(
        name="corp-to-gmail",
        mail_from="mon@example.org",
        rcpt_to="probe@example.net",
        smtp=ServerSettings(
            "smtp.example.org", 587, Security.STARTTLS, username="mon", password=Secret(password, "env FLOWTUI_SMTP")
        ),
        imap=ImapSettings(
            "imap.example.net", 993, Security.TLS, username="probe", password=Secret(password, "literal")
        ),
    )


def test_passwords_never_enter_the_database(db_path: Path) -> None:
    password = "s3cr3t-Pa55w0rd-8f2e"
    s = Store(db_path)
    s.write_route(_route(password), seen_at=1000.0)
    s.write_result(_delivered(_pending(1, route="corp-to-gmail")))
    s.flush_sync()
    try:
        for f in db_path.parent.iterdir():  # the db, its -wal and -shm while open
            assert password.encode() not in f.read_bytes(), f.name
        (route,) = s.routes()
        assert route.config is not None
        assert route.config["smtp"]["password_source"] == "env FLOWTUI_SMTP"
        assert "password" not in route.config["smtp"] and "password" not in route.config["imap"]
        assert route.config["smtp"]["security"] == "starttls"
    finally:
        s.close()
    assert password.encode() not in db_path.read_bytes()


def test_secrets_are_left_out_wherever_they_sit() -> None:
    from flowtui.core.storage import _public

    nested = {
        "tokens": (Secret("tok-1"), [Secret("tok-2")]),
        "server": ServerSettings("h", 25, Security.NONE, password=Secret("pw", "command")),
    }
    out = _public(nested)
    assert out["tokens"] == [None, [None]]
    assert out["server"]["password_source"] == "command" and "password" not in out["server"]
    assert "tok-1" not in repr(out) and "'pw'" not in repr(out)


def test_routes_keep_first_seen_and_update_config(store: Store) -> None:
    store.write_result(_pending(1, route="auto", sent_at=500.0))  # a probe alone registers its route
    store.write_route(_route("x"), seen_at=1000.0)
    store.write_route(dataclasses.replace(_route("x"), interval_s=30.0), seen_at=2000.0)
    store.flush_sync()
    auto, corp = store.routes()
    assert (auto.name, auto.first_seen, auto.config) == ("auto", 500.0, None)
    assert (corp.first_seen, corp.last_seen) == (1000.0, 2000.0)
    assert corp.config is not None and corp.config["interval_s"] == 30.0


def test_alerts_fire_resolve_and_ack(store: Store) -> None:
    fired = AlertRecord("a1", "r1", "latency", "warn", "fired", 100.0, message="p95 91s > 90s")
    store.write_alert(fired)
    store.write_alert(AlertRecord("a2", "r2", "lost", "crit", "fired", 200.0))
    store.flush_sync()
    assert [a.id for a in store.alerts(state="fired")] == ["a2", "a1"]
    store.ack_alert("a1", acked_at=150.0)
    resolved = dataclasses.replace(fired, state="resolved", resolved_at=160.0)
    store.write_alert(resolved)
    store.ack_alert("a2", acked_at=210.0)
    store.flush_sync()
    (a1,) = store.alerts(route="r1")
    # resolving (written without acked_at) does not wipe the earlier ack
    assert a1 == dataclasses.replace(resolved, acked_at=150.0)
    (a2,) = store.alerts(state="fired")
    assert a2.acked_at == 210.0 and a2.state == "fired"


def test_dns_checks_newest_last(store: Store) -> None:
    store.write_dns_check(DnsCheckRecord("example.org", "SPF", 10.0, "v=spf1 -all"))
    store.write_dns_check(DnsCheckRecord("example.org", "SPF", 20.0, None, error="SERVFAIL"))
    store.write_dns_check(DnsCheckRecord("example.org", "SPF", 30.0, "v=spf1 mx -all"))
    store.write_dns_check(DnsCheckRecord("example.org", "MX", 30.0, "10 mx."))
    store.flush_sync()
    assert [c.checked_at for c in store.dns_checks("example.org", "SPF")] == [20.0, 30.0]
    assert store.dns_checks("example.org", "SPF", n=3)[1].error == "SERVFAIL"
    assert store.dns_checks("example.org", "SPF")[-1].value == "v=spf1 mx -all"


def test_memory_database_is_refused() -> None:
    with pytest.raises(ValueError):
        Store(":memory:")


def test_sidecar_files_left_too_open_are_tightened(db_path: Path) -> None:
    with Store(db_path) as s:
        s.write_result(_pending(1))
    # another connection keeps the -wal/-shm files alive; make them world-readable
    other = sqlite3.connect(db_path)
    try:
        other.execute("UPDATE probes SET error = 'x'")
        other.commit()
        for name in ("flowtui.db-wal", "flowtui.db-shm"):
            os.chmod(db_path.parent / name, 0o644)
        with Store(db_path):
            for name in ("flowtui.db-wal", "flowtui.db-shm"):
                assert stat.S_IMODE((db_path.parent / name).stat().st_mode) == 0o600, name
    finally:
        other.close()


def test_a_stuck_writer_makes_writes_fail_instead_of_queueing_forever(db_path: Path) -> None:
    s = Store(db_path, queue_size=2, batch_size=1, batch_delay_s=0, put_timeout_s=0.1)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # the writer waits on this lock (busy timeout 5 s)
        written = []
        with pytest.raises(StoreError, match="stuck"):
            for i in range(10):
                s.write_result(_pending(i))
                written.append(i)
        assert 2 <= len(written) <= 3  # one in the writer's hands, two in the queue
        blocker.execute("ROLLBACK")
        s.flush_sync(timeout=5)
        # the lock was transient: nothing accepted was dropped
        assert [r.seq for r in s.last_probes("r1")] == written
        assert s.write_errors == 0
    finally:
        blocker.close()
        s.close()


def test_call_runs_on_the_writer_in_order_and_a_failing_call_rolls_back_alone(store: Store) -> None:
    def create(db) -> str:
        db.execute("CREATE TABLE extra (k TEXT PRIMARY KEY, v INTEGER)")
        return threading.current_thread().name

    writer_name = store.call(create).result(5)
    assert writer_name.startswith("flowtui-store-writer")

    def insert(k: str, v: int):
        return lambda db: db.execute("INSERT INTO extra VALUES (?, ?)", (k, v)).rowcount

    ok = store.call(insert("a", 1))
    bad = store.call(insert("a", 2))  # primary key clash: fails, alone
    ok2 = store.call(insert("b", 3))
    assert ok.result(5) == 1 and ok2.result(5) == 1
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(5)
    rows = store.read(lambda conn: conn.execute("SELECT k, v FROM extra ORDER BY k").fetchall())
    assert [tuple(r) for r in rows] == [("a", 1), ("b", 3)]
