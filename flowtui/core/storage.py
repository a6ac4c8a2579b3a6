"""The SQLite store: one file, WAL, mode 0600, one batching writer thread.

Writes (``write_result``, ``write_route``, ``write_alert``, ...) never touch
the database on the caller's thread: they enqueue into a bounded queue that
one writer thread drains, many rows per transaction. The writer owns its own
connection. A batch is committed when ``batch_size`` items wait, when
``batch_delay_s`` has passed since its first item, or when someone asks for
``flush``. Items are applied in the order they were enqueued.

Reads run on the caller's thread with a connection of that thread (a
``threading.local``), opened ``query_only``. They block: call them from a
worker thread or through ``asyncio.to_thread``, never on the event loop.

Passwords never enter the database: a route's stored config is built with
every ``Secret`` dropped (only its ``source``, which is safe to show, is kept).

Schema versions live in ``PRAGMA user_version``; ``_MIGRATIONS[i]`` takes
the schema from version i to i+1. A file from a newer flowtui is refused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from flowtui.core.headers import valid_text
from flowtui.core.model import (
    AuthResults,
    Bounce,
    Hop,
    MethodResult,
    ProbeResult,
    ProbeState,
    Route,
    Secret,
)
from flowtui.core.stats import WindowStats

log = logging.getLogger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
BUSY_TIMEOUT_MS = 5000


class StoreError(Exception):
    """The store cannot do what was asked (closed, writer stuck, newer schema)."""


class StoreClosed(StoreError):
    """The store has been closed."""


# --------------------------------------------------------------------------
# Rows that are not probes
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteRecord:
    name: str
    first_seen: float
    last_seen: float | None = None
    config: dict[str, Any] | None = None  # the route as configured, without passwords


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One firing of one alert rule: written when it fires, again when it resolves.

    ``id`` is chosen by the caller (stable across the two writes).
    ``state`` is "fired" or "resolved".
    """

    id: str
    route: str | None
    rule: str
    severity: str
    state: str
    fired_at: float
    resolved_at: float | None = None
    message: str = ""
    acked_at: float | None = None


@dataclass(frozen=True, slots=True)
class DnsCheckRecord:
    domain: str
    kind: str  # "MX", "SPF", "DMARC", ...
    checked_at: float
    value: str | None = None  # the records, normalised by the caller
    error: str | None = None


# --------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------


def _migrate_v1(db: Database) -> None:
    db.table("routes").create(
        {"name": str, "first_seen": float, "last_seen": float, "last_config": str},
        pk="name",
        not_null={"first_seen"},
    )
    db.table("probes").create(
        {
            "probe_id": str,
            "route": str,
            "seq": int,
            "state": str,
            "sent_at": float,
            "submit_s": float,
            "transit_s": float,
            "total_s": float,
            "detected_at": float,
            "detect_uncertainty_s": float,
            "queue_id": str,
            "folder": str,
            "message_id": str,
            "error": str,
            "error_phase": str,
            "content_ok": int,
            "phases": str,
            "auth": str,
            "bounce": str,
            "updated_at": float,
        },
        pk="probe_id",
        not_null={"route", "seq", "state", "sent_at"},
    )
    probes = db.table("probes")
    probes.create_index(["route", "sent_at"], index_name="probes_route_sent")  # last N, windows
    probes.create_index(["state", "sent_at"], index_name="probes_state_sent")  # pending probes
    probes.create_index(["route", "seq"], index_name="probes_route_seq")  # next_seq
    db.table("hops").create(
        {
            "probe_id": str,
            "idx": int,
            "from_host": str,
            "from_rdns": str,
            "from_ip": str,
            "by_host": str,
            "with_protocol": str,
            "hop_id": str,
            "for_addr": str,
            "via": str,
            "envelope_from": str,
            "tls": int,
            "timestamp": str,  # ISO 8601, UTC
            "delay_s": float,
            "raw": str,
        },
        pk=("probe_id", "idx"),
    )
    db.table("alerts").create(
        {
            "id": str,
            "route": str,
            "rule": str,
            "severity": str,
            "state": str,
            "fired_at": float,
            "resolved_at": float,
            "message": str,
            "acked_at": float,
        },
        pk="id",
        not_null={"rule", "severity", "state", "fired_at"},
    )
    db.table("alerts").create_index(["state", "fired_at"], index_name="alerts_state_fired")
    db.table("alerts").create_index(["fired_at"], index_name="alerts_fired")
    db.table("dns_checks").create(
        {"id": int, "domain": str, "kind": str, "checked_at": float, "value": str, "error": str},
        pk="id",
        not_null={"domain", "kind", "checked_at"},
    )
    db.table("dns_checks").create_index(["domain", "kind", "checked_at"], index_name="dns_domain_kind_at")


def _migrate_v2(db: Database) -> None:
    from flowtui.core.rollup import migrate_v2  # roll-ups own their tables (issue 7)

    migrate_v2(db)


def _migrate_v3_dmarc(db: Database) -> None:
    from flowtui.core.dmarc.store import migrate  # DMARC aggregate reports (issue 10)

    migrate(db)


_MIGRATIONS: tuple[Callable[[Database], None], ...] = (_migrate_v1, _migrate_v2, _migrate_v3_dmarc)
SCHEMA_VERSION = len(_MIGRATIONS)


def _migrate(db: Database) -> int:
    current = db.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {current} is newer than this flowtui supports ({SCHEMA_VERSION})"
        )
    for version in range(current, SCHEMA_VERSION):
        with db.atomic():
            _MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
    return SCHEMA_VERSION


# --------------------------------------------------------------------------
# Model <-> row
# --------------------------------------------------------------------------


def _public(value: Any) -> Any:
    """A JSON-able copy of ``value`` with every Secret left out.

    A Secret held by a dataclass field ``x`` becomes ``x_source`` (where it
    comes from, safe to show); a Secret anywhere else becomes None. The
    Secret test comes first: a Secret is itself a dataclass.
    """
    if isinstance(value, Secret):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if isinstance(item, Secret):
                out[f"{f.name}_source"] = item.source
            else:
                out[f.name] = _public(item)
        return out
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_public(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _public(v) for k, v in value.items()}
    return value


def route_config(route: Route) -> dict[str, Any]:
    """The route as stored in ``routes.last_config``: no password, ever."""
    return _public(route)


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _int(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _method_to_json(m: MethodResult | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "method": m.method,
        "result": m.result,
        "reason": m.reason,
        "comment": m.comment,
        "properties": [list(p) for p in m.properties],
    }


def _method_from_json(d: dict[str, Any] | None) -> MethodResult | None:
    if d is None:
        return None
    return MethodResult(
        method=d["method"],
        result=d["result"],
        reason=d.get("reason"),
        comment=d.get("comment"),
        properties=tuple((k, v) for k, v in d.get("properties", ())),
    )


def _auth_to_json(a: AuthResults | None) -> str | None:
    if a is None:
        return None
    return json.dumps(
        {
            "authserv_id": a.authserv_id,
            "spf": _method_to_json(a.spf),
            "dkim": _method_to_json(a.dkim),
            "dmarc": _method_to_json(a.dmarc),
            "results": [_method_to_json(m) for m in a.results],
            "warnings": list(a.warnings),
        }
    )


def _auth_from_json(text: str | None) -> AuthResults | None:
    if text is None:
        return None
    d = json.loads(text)
    return AuthResults(
        authserv_id=d.get("authserv_id"),
        spf=_method_from_json(d.get("spf")),
        dkim=_method_from_json(d.get("dkim")),
        dmarc=_method_from_json(d.get("dmarc")),
        results=tuple(m for m in (_method_from_json(x) for x in d.get("results", ())) if m is not None),
        warnings=tuple(d.get("warnings", ())),
    )


def _bounce_to_json(b: Bounce | None) -> str | None:
    if b is None:
        return None
    d = dataclasses.asdict(b)
    d["warnings"] = list(b.warnings)
    return json.dumps(d)


def _bounce_from_json(text: str | None) -> Bounce | None:
    if text is None:
        return None
    d = json.loads(text)
    d["warnings"] = tuple(d.get("warnings", ()))
    known = {f.name for f in dataclasses.fields(Bounce)}
    return Bounce(**{k: v for k, v in d.items() if k in known})


def _ts_to_text(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # Hop promises aware UTC; a naive one is taken as UTC
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).isoformat()


def _ts_from_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _valid(row: dict[str, Any]) -> dict[str, Any]:
    """Every text value storable as UTF-8 (header text may hold undecodable bytes)."""
    return {k: valid_text(v) if isinstance(v, str) else v for k, v in row.items()}


def _probe_row(r: ProbeResult, updated_at: float) -> dict[str, Any]:
    return _valid({
        "probe_id": r.probe_id,
        "route": r.route,
        "seq": r.seq,
        "state": ProbeState(r.state).value,
        "sent_at": r.sent_at,
        "submit_s": r.submit_s,
        "transit_s": r.transit_s,
        "total_s": r.total_s,
        "detected_at": r.detected_at,
        "detect_uncertainty_s": r.detect_uncertainty_s,
        "queue_id": r.queue_id,
        "folder": r.folder,
        "message_id": r.message_id,
        "error": r.error,
        "error_phase": r.error_phase,
        "content_ok": _int(r.content_ok),
        "phases": json.dumps([[name, secs] for name, secs in r.phases]),
        "auth": _auth_to_json(r.auth),
        "bounce": _bounce_to_json(r.bounce),
        "updated_at": updated_at,
    })


def _hop_row(probe_id: str, h: Hop) -> dict[str, Any]:
    return _valid({
        "probe_id": probe_id,
        "idx": h.index,
        "from_host": h.from_host,
        "from_rdns": h.from_rdns,
        "from_ip": h.from_ip,
        "by_host": h.by_host,
        "with_protocol": h.with_protocol,
        "hop_id": h.id,
        "for_addr": h.for_addr,
        "via": h.via,
        "envelope_from": h.envelope_from,
        "tls": _int(h.tls),
        "timestamp": _ts_to_text(h.timestamp),
        "delay_s": h.delay_s,
        "raw": h.raw,
    })


def _hop_from_row(row: sqlite3.Row) -> Hop:
    return Hop(
        index=row["idx"],
        from_host=row["from_host"],
        from_rdns=row["from_rdns"],
        from_ip=row["from_ip"],
        by_host=row["by_host"],
        with_protocol=row["with_protocol"],
        id=row["hop_id"],
        for_addr=row["for_addr"],
        via=row["via"],
        envelope_from=row["envelope_from"],
        tls=_bool(row["tls"]),
        timestamp=_ts_from_text(row["timestamp"]),
        delay_s=row["delay_s"],
        raw=row["raw"] or "",
    )


def _probe_from_row(row: sqlite3.Row, hops: tuple[Hop, ...] = ()) -> ProbeResult:
    return ProbeResult(
        route=row["route"],
        probe_id=row["probe_id"],
        seq=row["seq"],
        state=ProbeState(row["state"]),
        sent_at=row["sent_at"],
        submit_s=row["submit_s"],
        transit_s=row["transit_s"],
        total_s=row["total_s"],
        detected_at=row["detected_at"],
        detect_uncertainty_s=row["detect_uncertainty_s"],
        queue_id=row["queue_id"],
        folder=row["folder"],
        phases=tuple((name, secs) for name, secs in json.loads(row["phases"] or "[]")),
        hops=hops,
        auth=_auth_from_json(row["auth"]),
        bounce=_bounce_from_json(row["bounce"]),
        error=row["error"],
        error_phase=row["error_phase"],
        content_ok=_bool(row["content_ok"]),
        message_id=row["message_id"],
    )


_PROBE_COLUMNS = (
    "probe_id, route, seq, state, sent_at, submit_s, transit_s, total_s, detected_at, "
    "detect_uncertainty_s, queue_id, folder, message_id, error, error_phase, content_ok, "
    "phases, auth, bounce"
)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def _create_private_file(path: Path) -> None:
    """Create ``path`` with mode 0600 (its directory 0700 if missing) before SQLite opens it."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    os.close(fd)


def _tighten_sidecars(path: Path) -> None:
    """chmod the -wal/-shm (and -journal) files 0600 where they exist.

    SQLite already creates them with the database file's mode; this is the
    belt to that pair of braces (e.g. a file made by an older version).
    """
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        try:
            if stat.S_IMODE(side.stat().st_mode) & 0o077:
                os.chmod(side, FILE_MODE)
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------
# The writer's queue items
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Op:
    kind: str  # "result", "route", "alert", "ack", "dns", "prune", "call", "flush"
    payload: Any = None
    at: float = 0.0
    future: concurrent.futures.Future[Any] | None = None


_STOP = _Op("stop")


# --------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------


class Store:
    """flowtui's SQLite file. See the module docstring for the threading rules.

    ``queue_size`` bounds the writer's queue: a write into a full queue waits
    up to ``put_timeout_s`` for room and then raises ``StoreError`` (a writer
    that far behind is stuck, and saying so beats growing without bound).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        batch_delay_s: float = 0.2,
        put_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        if str(path) == ":memory:":
            raise ValueError("the store needs a file (readers and the writer use separate connections)")
        self.batch_size = batch_size
        self.batch_delay_s = batch_delay_s
        self.put_timeout_s = put_timeout_s
        self.write_errors = 0  # items the writer could not apply (logged)
        self.commits = 0  # transactions the writer committed
        self._queue: queue.Queue[_Op] = queue.Queue(maxsize=queue_size)
        self._put_lock = threading.Lock()
        self._closed = threading.Event()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

        _create_private_file(self.path)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._writer_main, args=(ready,), name=f"flowtui-store-writer:{self.path.name}", daemon=True
        )
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._closed.set()
            self._thread.join()
            raise

    # ---------------------------------------------------------------- writes

    def _put(self, op: _Op) -> None:
        with self._put_lock:
            if self._closed.is_set():
                raise StoreClosed(f"store {self.path} is closed")
            try:
                self._queue.put(op, timeout=self.put_timeout_s)
            except queue.Full:
                raise StoreError(
                    f"store writer is stuck: {self._queue.maxsize} writes waiting for {self.put_timeout_s}s"
                ) from None

    def write_result(self, result: ProbeResult) -> None:
        """Insert or update a probe (by probe_id); its hops are replaced by ``result.hops``."""
        self._put(_Op("result", result, time.time()))

    def write_route(self, route: Route, seen_at: float | None = None) -> None:
        """Record a configured route (passwords dropped); keeps its first_seen."""
        self._put(_Op("route", route_config(route), time.time() if seen_at is None else seen_at))

    def write_alert(self, alert: AlertRecord) -> None:
        """Insert or replace an alert by id (fired, then resolved)."""
        self._put(_Op("alert", alert))

    def ack_alert(self, alert_id: str, acked_at: float | None = None) -> None:
        """Mark an alert acknowledged, leaving its state alone."""
        self._put(_Op("ack", alert_id, time.time() if acked_at is None else acked_at))

    def write_dns_check(self, check: DnsCheckRecord) -> None:
        self._put(_Op("dns", check))

    def prune(self, older_than: float) -> concurrent.futures.Future[int]:
        """Delete probes (and hops) sent, resolved alerts resolved, and DNS checks
        made before epoch ``older_than``. The future gives the number of probes deleted."""
        fut: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._put(_Op("prune", older_than, future=fut))
        return fut

    def call(self, fn: Callable[[Database], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn(db)`` on the writer thread, inside its write transaction, in
        queue order with the other writes. The future gives what ``fn`` returned
        (or its exception; a failing ``fn`` rolls back only its own work).

        For modules that own tables of their own (roll-ups, DMARC reports)
        without teaching this class each of their writes."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put(_Op("call", fn, future=fut))
        return fut

    def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(conn)`` on this thread's read-only connection, in one snapshot. Blocks:
        not on the event loop."""
        with self._snapshot() as conn:
            return fn(conn)

    def _flush_future(self) -> concurrent.futures.Future[None]:
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put(_Op("flush", future=fut))
        return fut

    def flush_sync(self, timeout: float | None = None) -> None:
        """Block until everything enqueued so far is committed."""
        self._flush_future().result(timeout)

    async def flush(self) -> None:
        """Wait (without blocking the loop) until everything enqueued so far is committed."""
        await asyncio.wrap_future(self._flush_future())

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float | None = None) -> None:
        """Commit everything enqueued, stop the writer, close connections. Idempotent.

        Reader connections of every thread are closed too; reads afterwards
        raise ``StoreClosed``.
        """
        with self._put_lock:
            if not self._closed.is_set():
                self._closed.set()
                self._queue.put(_STOP)  # may wait for room; the writer keeps draining
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise StoreError(f"store writer did not stop within {timeout}s")
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- writer

    def _open_writer(self) -> Database:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
        db = Database(conn, execute_plugins=False)
        db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        _tighten_sidecars(self.path)
        return db

    def _writer_main(self, ready: concurrent.futures.Future[None]) -> None:
        db: Database | None = None
        try:
            db = self._open_writer()
            _migrate(db)
        except BaseException as exc:
            if db is not None:
                db.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                batch, stopping = self._collect()
                if not batch:
                    continue
                try:
                    self._apply_batch(db, batch)
                except Exception as exc:  # a bug here must not leave flush() waiting forever
                    log.exception("store: writer error")
                    for op in batch:
                        if op.future is not None and not op.future.done():
                            op.future.set_exception(exc)
        finally:
            db.close()

    def _collect(self) -> tuple[list[_Op], bool]:
        """One batch: block for the first item, then gather until the batch is full,
        ``batch_delay_s`` has passed, an op someone waits on arrives, or stop."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        if first.future is not None:  # someone waits on it (flush, prune): commit now
            return batch, False
        deadline = time.monotonic() + self.batch_delay_s
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                op = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if op is _STOP:
                return batch, True
            batch.append(op)
            if op.future is not None:
                break
        return batch, False

    def _apply_batch(self, db: Database, batch: list[_Op]) -> None:
        """Apply ``batch`` in one transaction; retry while the file is locked.

        A locked or busy database (another process holding the write lock
        past the busy timeout) is transient: the batch is retried with
        backoff, never dropped, and meanwhile the bounded queue fills up and
        makes writers fail loudly. Any other error is the data's: the batch
        is rolled back and re-applied one op per transaction, and only the
        ops that fail on their own are dropped (logged, ``write_errors``).
        """
        delay = 0.05
        while True:
            try:
                done = self._transaction(db, batch)
                break
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    done = self._one_by_one(db, batch)
                    break
                if self._closed.is_set() and delay >= 1.0:
                    log.error("store: database still locked while closing; dropping %d writes", len(batch))
                    self.write_errors += len(batch)
                    self._fail(batch, exc)
                    return
                log.warning("store: database is locked; retrying %d writes in %.2fs", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception:
                log.exception("store: a batch of %d writes failed; applying them one by one", len(batch))
                done = self._one_by_one(db, batch)
                break
        for fut, value in done:  # after the commit: a flush means "committed"
            if not fut.done():
                fut.set_result(value)

    def _transaction(self, db: Database, ops: list[_Op]) -> list[tuple[concurrent.futures.Future[Any], Any]]:
        """Apply ``ops`` in one write transaction (BEGIN IMMEDIATE: the write lock
        is taken up front, so a busy database waits the busy timeout rather
        than failing half-way on a read-to-write upgrade)."""
        done: list[tuple[concurrent.futures.Future[Any], Any]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for group in _runs(ops):
                done.extend(self._apply(db, group))
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise
        self.commits += 1
        return done

    def _one_by_one(self, db: Database, batch: list[_Op]) -> list[tuple[concurrent.futures.Future[Any], Any]]:
        done: list[tuple[concurrent.futures.Future[Any], Any]] = []
        for op in batch:
            try:
                done.extend(self._transaction(db, [op]))
            except Exception as exc:
                self.write_errors += 1
                log.error("store: dropped a %s write: %s", op.kind, exc)
                self._fail([op], exc)
        return done

    @staticmethod
    def _fail(ops: list[_Op], exc: BaseException) -> None:
        for op in ops:
            if op.future is not None and not op.future.done():
                op.future.set_exception(exc)

    def _apply(self, db: Database, ops: list[_Op]) -> list[tuple[concurrent.futures.Future[Any], Any]]:
        """Apply a run of same-kind ops inside the open transaction."""
        kind = ops[0].kind
        done: list[tuple[concurrent.futures.Future[Any], Any]] = []
        if kind == "result":
            latest: dict[str, _Op] = {}
            for op in ops:  # a probe written twice in one run: the last write wins
                latest.pop(op.payload.probe_id, None)
                latest[op.payload.probe_id] = op
            results = [op.payload for op in latest.values()]
            db.table("routes").insert_all(
                ({"name": r.route, "first_seen": r.sent_at} for r in results), pk="name", ignore=True
            )
            db.table("probes").upsert_all((_probe_row(op.payload, op.at) for op in latest.values()), pk="probe_id")
            ids = list(latest)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                db.execute(f"DELETE FROM hops WHERE probe_id IN ({','.join('?' * len(chunk))})", chunk)
            db.table("hops").insert_all(
                (_hop_row(r.probe_id, h) for r in results for h in r.hops), pk=("probe_id", "idx"), replace=True
            )
        elif kind == "route":
            for op in ops:
                config = op.payload
                db.table("routes").insert({"name": config["name"], "first_seen": op.at}, pk="name", ignore=True)
                db.execute(
                    "UPDATE routes SET last_seen = ?, last_config = ? WHERE name = ?",
                    (op.at, json.dumps(config), config["name"]),
                )
        elif kind == "alert":
            # acked_at is set by ack_alert; a later fired/resolved write without one keeps it
            db.conn.executemany(
                "INSERT INTO alerts (id, route, rule, severity, state, fired_at, resolved_at, message, acked_at) "
                "VALUES (:id, :route, :rule, :severity, :state, :fired_at, :resolved_at, :message, :acked_at) "
                "ON CONFLICT (id) DO UPDATE SET route = excluded.route, rule = excluded.rule, "
                "severity = excluded.severity, state = excluded.state, fired_at = excluded.fired_at, "
                "resolved_at = excluded.resolved_at, message = excluded.message, "
                "acked_at = COALESCE(excluded.acked_at, alerts.acked_at)",
                [dataclasses.asdict(op.payload) for op in ops],
            )
        elif kind == "ack":
            for op in ops:
                db.execute("UPDATE alerts SET acked_at = ? WHERE id = ?", (op.at, op.payload))
        elif kind == "dns":
            db.table("dns_checks").insert_all((dataclasses.asdict(op.payload) for op in ops), pk="id")
        elif kind == "prune":
            for op in ops:
                cutoff = op.payload
                db.execute(
                    "DELETE FROM hops WHERE probe_id IN (SELECT probe_id FROM probes WHERE sent_at < ?)", (cutoff,)
                )
                deleted = db.execute("DELETE FROM probes WHERE sent_at < ?", (cutoff,)).rowcount
                db.execute("DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?", (cutoff,))
                db.execute("DELETE FROM dns_checks WHERE checked_at < ?", (cutoff,))
                assert op.future is not None
                done.append((op.future, deleted))
        elif kind == "call":
            for op in ops:
                assert op.future is not None
                done.append((op.future, op.payload(db)))
        elif kind == "flush":
            for op in ops:
                assert op.future is not None
                done.append((op.future, None))
        else:  # pragma: no cover - a bug in this module
            raise AssertionError(f"unknown store op {kind!r}")
        return done

    # ----------------------------------------------------------------- reads

    def _reader(self) -> sqlite3.Connection:
        if self._closed.is_set():
            raise StoreClosed(f"store {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so close() can close it from the
            # closing thread; it is used by the thread that opened it alone.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _snapshot(self) -> _ReadTxn:
        return _ReadTxn(self._reader())

    def probe(self, probe_id: str) -> ProbeResult | None:
        """One probe with its hops, or None."""
        with self._snapshot() as conn:
            row = conn.execute(f"SELECT {_PROBE_COLUMNS} FROM probes WHERE probe_id = ?", (probe_id,)).fetchone()
            if row is None:
                return None
            return _probe_from_row(row, self._hops(conn, probe_id))

    @staticmethod
    def _hops(conn: sqlite3.Connection, probe_id: str) -> tuple[Hop, ...]:
        rows = conn.execute("SELECT * FROM hops WHERE probe_id = ? ORDER BY idx", (probe_id,)).fetchall()
        return tuple(_hop_from_row(r) for r in rows)

    def last_probes(self, route: str, n: int = 60, *, with_hops: bool = False) -> list[ProbeResult]:
        """The newest ``n`` probes of ``route``, oldest first (newest last).

        Hops are left out (empty) unless ``with_hops``: the sparkline and the
        route table need none of them.
        """
        with self._snapshot() as conn:
            rows = conn.execute(
                f"SELECT {_PROBE_COLUMNS} FROM probes WHERE route = ? ORDER BY sent_at DESC, seq DESC LIMIT ?",
                (route, n),
            ).fetchall()
            rows.reverse()
            return [_probe_from_row(r, self._hops(conn, r["probe_id"]) if with_hops else ()) for r in rows]

    def pending_probes(self, since: float | None = None) -> list[ProbeResult]:
        """Probes still pending or lost (sent at or after ``since``), oldest first.

        A restarted monitor matches arrivals against these: a lost probe
        that turns up is recorded as late.
        """
        states = (ProbeState.PENDING.value, ProbeState.LOST.value)
        with self._snapshot() as conn:
            rows = conn.execute(
                f"SELECT {_PROBE_COLUMNS} FROM probes WHERE state IN (?, ?) AND sent_at >= ? ORDER BY sent_at, seq",
                (*states, float("-inf") if since is None else since),
            ).fetchall()
            return [_probe_from_row(r) for r in rows]

    def window_stats(self, route: str, since: float) -> dict[str, float | int | None]:
        """``WindowStats`` (as a dict) over the probes of ``route`` sent at or after epoch ``since``."""
        conn = self._reader()
        rows = conn.execute(
            "SELECT state, total_s FROM probes WHERE route = ? AND sent_at >= ?", (route, since)
        ).fetchall()
        return WindowStats.from_pairs((r[0], r[1]) for r in rows).as_dict()

    def next_seq(self, route: str) -> int:
        """The sequence number for the route's next probe: highest stored + 1, or 1.

        Reads committed rows only: flush first if writes may be queued.
        """
        row = self._reader().execute("SELECT MAX(seq) FROM probes WHERE route = ?", (route,)).fetchone()
        return 1 if row[0] is None else row[0] + 1

    def routes(self) -> list[RouteRecord]:
        """Every route the store knows (configured, or seen in a probe), by name."""
        rows = self._reader().execute(
            "SELECT name, first_seen, last_seen, last_config FROM routes ORDER BY name"
        ).fetchall()
        return [
            RouteRecord(
                name=r["name"],
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
                config=None if r["last_config"] is None else json.loads(r["last_config"]),
            )
            for r in rows
        ]

    def alerts(self, *, state: str | None = None, route: str | None = None, limit: int = 200) -> list[AlertRecord]:
        """Alerts, newest fired first; filtered by ``state`` ("fired"/"resolved") and ``route``."""
        where, args = [], []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if route is not None:
            where.append("route = ?")
            args.append(route)
        sql = "SELECT id, route, rule, severity, state, fired_at, resolved_at, message, acked_at FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY fired_at DESC LIMIT ?"
        rows = self._reader().execute(sql, (*args, limit)).fetchall()
        return [AlertRecord(**dict(r)) for r in rows]

    def last_dns_values(self) -> dict[tuple[str, str], str]:
        """(domain, kind) -> the newest value stored for it (records that existed)."""
        return self.read(_last_dns_values)

    def dns_checks(self, domain: str, kind: str, n: int = 2) -> list[DnsCheckRecord]:
        """The newest ``n`` checks of one record, oldest first (compare the last two for a change)."""
        rows = self._reader().execute(
            "SELECT domain, kind, checked_at, value, error FROM dns_checks "
            "WHERE domain = ? AND kind = ? ORDER BY checked_at DESC, id DESC LIMIT ?",
            (domain, kind, n),
        ).fetchall()
        return [DnsCheckRecord(**dict(r)) for r in reversed(rows)]


def _last_dns_values(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    """The newest stored value of every (domain, kind) that had one (for change detection)."""
    rows = conn.execute(
        "SELECT d.domain, d.kind, d.value FROM dns_checks d JOIN (SELECT domain, kind, MAX(checked_at) AS at "
        "FROM dns_checks WHERE value IS NOT NULL GROUP BY domain, kind) m "
        "ON d.domain = m.domain AND d.kind = m.kind AND d.checked_at = m.at WHERE d.value IS NOT NULL"
    ).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _runs(batch: Iterable[_Op]) -> list[list[_Op]]:
    """Split a batch into runs of consecutive ops of one kind (order kept)."""
    runs: list[list[_Op]] = []
    for op in batch:
        if runs and runs[-1][0].kind == op.kind:
            runs[-1].append(op)
        else:
            runs.append([op])
    return runs


class _ReadTxn:
    """A read transaction, so multi-query reads (a probe and its hops) see one snapshot."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("COMMIT")


def open_store(config_path: str, database: str) -> Store:
    """The config's store, or one line naming the file and key when it cannot be opened."""
    from flowtui.core.errors import UserError

    try:
        return Store(database)
    except (OSError, sqlite3.Error, StoreError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UserError(f"{config_path}: monitor.database: cannot use {database}: {reason}") from None
