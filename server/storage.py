"""Server storage: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL via psycopg 3 (SPEC.md, Server API).

The schema is created only by Alembic migrations (``server/migrations``); the tables below describe it for
queries and must match the migrations (a test compares them). Times are stored as epoch milliseconds (UTC).

Event ingest is one transaction: ``INSERT ... ON CONFLICT (uid) DO NOTHING RETURNING uid`` stores each event
once however often it is resent, the device's sequence high-water mark and gap records move with it, and the
caller answers 200 only after the commit.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.errors import MamoriError
from server.status import Gap, fill_gaps, new_gaps

metadata = sa.MetaData()

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("group_name", sa.String(64), nullable=False),
    sa.Column("hostname", sa.String(255), nullable=True),
    sa.Column("os", sa.String(32), nullable=True),
    sa.Column("enrolled_at", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=True),
    sa.Column("state", sa.String(32), nullable=True),
    sa.Column("stage", sa.String(32), nullable=True),
    sa.Column("failing", sa.Text, nullable=True),
    sa.Column("heartbeat_s", sa.Float, nullable=True),
    sa.Column("stopped", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("agent_version", sa.String(32), nullable=True),
    sa.Column("policy_id", sa.String(64), nullable=True),
    sa.Column("policy_version", sa.BigInteger, nullable=True),
    sa.Column("max_sequence", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    # derived from events by server/console/state.py (migration 0005)
    sa.Column("running", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("unexpected_stop_at", sa.BigInteger, nullable=True),
    sa.Column("active_day", sa.Integer, nullable=True),
)

enroll_secrets = sa.Table(
    "enroll_secrets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("group_name", sa.String(64), nullable=False),
    sa.Column("uses_left", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

admin_tokens = sa.Table(
    "admin_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_name", sa.String(64), nullable=False),
    sa.Column("policy_id", sa.String(64), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("bundle", sa.LargeBinary, nullable=False),
    sa.Column("etag", sa.String(80), nullable=False),
    sa.Column("uploaded_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("group_name", "version", name="uq_policies_group_version"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("uid", sa.String(36), primary_key=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False),
    sa.Column("class_uid", sa.Integer, nullable=False),
    sa.Column("type_uid", sa.Integer, nullable=False),
    sa.Column("severity_id", sa.Integer, nullable=False),
    sa.Column("event_code", sa.String(64), nullable=False),
    sa.Column("time", sa.BigInteger, nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("ix_events_device_sequence", "device_id", "sequence"),
    sa.Index("ix_events_time", "time"),
    sa.Index("ix_events_class_uid", "class_uid"),
)

gaps = sa.Table(
    "gaps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(64), nullable=False),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("detected_at", sa.BigInteger, nullable=False),
    sa.Index("ix_gaps_device", "device_id"),
)

# The console's state derived from events in the ingest transaction (server/console/state.py, migration 0005).
device_checks = sa.Table(
    "device_checks",
    metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("check_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("enforcement", sa.String(16), nullable=False),
    sa.Column("failing_since", sa.BigInteger, nullable=True),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

acknowledgements = sa.Table(
    "acknowledgements",
    metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("policy_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True),
    sa.Column("group_name", sa.String(64), nullable=False),  # the device's group when it acknowledged
    sa.Column("acked_at", sa.BigInteger, nullable=False),
    sa.Index("ix_acknowledgements_version", "group_name", "policy_id", "version"),
)

console_daily = sa.Table(
    "console_daily",
    metadata,
    sa.Column("day", sa.Integer, primary_key=True),  # days since 1970-01-01 UTC
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)


_EVENT_COLUMNS = tuple(c.name for c in events.columns)
# Built once from the table definition above, never from request data.
# Rows per multi-row INSERT on SQLite; a batch is cut greedily into these sizes, so at most a handful of distinct
# statements exist (each prepared once and kept in the driver's statement cache). Bound parameters stay under
# SQLITE_MAX_VARIABLE_NUMBER (999 before SQLite 3.32, 32766 since).
_SQLITE_CHUNKS = (500, 100, 20, 5, 1) if sqlite3.sqlite_version_info >= (3, 32, 0) else (64, 16, 4, 1)


@functools.cache
def _sqlite_insert_events(rows: int) -> str:
    """``INSERT INTO events (...) VALUES (?,...), ... ON CONFLICT (uid) DO NOTHING`` for ``rows`` rows.

    Built only from the table definition and an integer, never from request data."""
    one = f"({', '.join('?' * len(_EVENT_COLUMNS))})"
    return (
        f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES {', '.join([one] * rows)} "  # noqa: S608
        "ON CONFLICT (uid) DO NOTHING"
    )


assert _EVENT_COLUMNS == (
    "uid",
    "device_id",
    "sequence",
    "class_uid",
    "type_uid",
    "severity_id",
    "event_code",
    "time",
    "received_at",
    "body",
), "Storage.ingest builds rows in this order"


@functools.cache
def _pg_ingest_sql() -> str:
    """PostgreSQL: a batch in one statement (one round trip between BEGIN and COMMIT).

    The rows travel as one array per column (``unnest``), so the text is the same for every batch size and
    psycopg prepares it server-side after a few executions (its ``prepare_threshold``). ``upd`` locks the device
    row (``FOR UPDATE`` in the subquery: under READ COMMITTED a concurrent batch of the same device waits and then
    reads the committed high-water mark, so gap bookkeeping sees batches one after another), returns the mark
    from before this batch and raises it to the highest inserted sequence; ``ins`` returns the rows inserted,
    not the duplicates. Built only from the table definition, never from request data."""
    cols = ", ".join(_EVENT_COLUMNS)
    return (
        "WITH ins AS ("  # noqa: S608 - column names from the table definition, values bound
        f"INSERT INTO events ({cols}) "
        "SELECT u, %(device_id)s::varchar, s, c, t, sv, e, tm, %(now)s::bigint, b "
        "FROM unnest(%(uid)s::varchar[], %(sequence)s::bigint[], %(class_uid)s::int[], %(type_uid)s::int[], "
        "%(severity_id)s::int[], %(event_code)s::varchar[], %(time)s::bigint[], %(body)s::text[]) "
        "AS r(u, s, c, t, sv, e, tm, b) "
        "ON CONFLICT (uid) DO NOTHING RETURNING uid, sequence"
        "), upd AS ("
        "UPDATE devices AS d SET max_sequence = GREATEST(old.max_sequence, "
        "COALESCE((SELECT max(sequence) FROM ins), 0)), last_seen = %(now)s::bigint, stopped = false "
        "FROM (SELECT id, max_sequence FROM devices WHERE id = %(device_id)s::varchar FOR UPDATE) AS old "
        "WHERE d.id = old.id RETURNING old.max_sequence AS previous"
        ") SELECT (SELECT previous FROM upd), ARRAY(SELECT uid FROM ins), ARRAY(SELECT sequence FROM ins)"
    )


@functools.cache
def _update_device_seen() -> Any:
    return (
        devices.update()
        .where(devices.c.id == sa.bindparam("device_id"))
        .values(max_sequence=sa.bindparam("new_max"), last_seen=sa.bindparam("seen"), stopped=False)
    )


@functools.cache
def _select_max_sequence() -> Any:
    # FOR UPDATE on PostgreSQL: concurrent batches of one device serialise on its row (gap bookkeeping).
    return (
        sa.select(devices.c.max_sequence).where(devices.c.id == sa.bindparam("device_id")).with_for_update()
    )


class StorageError(MamoriError):
    """The database is unreachable or not migrated."""


class EnrollRefusedError(MamoriError):
    """The enrollment secret is unknown, used up or expired (``reason``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"enrollment secret {reason}")


class PolicyConflictError(MamoriError):
    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class Device:
    id: str
    group: str
    revoked: bool


class EventRow(NamedTuple):
    """One validated event as stored (a NamedTuple: built 500 times a batch, several times cheaper than a
    frozen dataclass)."""

    uid: str
    sequence: int
    class_uid: int
    type_uid: int
    severity_id: int
    event_code: str
    time: int
    body: str


# Work that runs on a batch's newly stored events in its ingest transaction, so that it commits with them or not
# at all and a resent batch (its events stored already) costs nothing: (connection, device id, the rows inserted,
# received-at ms, facts: uid -> the ``unmapped`` data ingest parsed already, None when it did not). create_app
# registers the console's derived state and the alert arrival rules (Storage.after_insert).
AfterInsert = Callable[[Connection, str, list[EventRow], int, Mapping[str, Any] | None], None]


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # SQLAlchemy's default pool keeps 5 connections and opens (and closes) overflow ones for one request each;
        # under 16 concurrent ingests that churn, with the pragmas run on every new connection, showed in the
        # server's profile (docs/performance.md). Keep as many as the ingest ceiling plus the lookups beside it.
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            **({} if ":memory:" in url or url in ("sqlite://", "sqlite:///") else {"pool_size": 24}),
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, emit BEGIN (SQLAlchemy docs, "Serializable isolation / Savepoints /
            # Transactional DDL" for pysqlite), so writers can BEGIN IMMEDIATE below.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: "200 only after commit" must also hold across a power cut (SPEC.md, Server API).
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # Writers take the write lock up front: with several server processes a deferred transaction that
            # reads first and writes later would fail with SQLITE_BUSY instead of waiting (busy_timeout).
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    # No pool_pre_ping (a round trip per checkout on the ingest path); recycle instead, and a dropped
    # connection surfaces as OperationalError -> 503 + Retry-After, which the agent retries.
    # A fixed pool, no overflow: an overflow connection is opened for one request and closed after it, and
    # opening a PostgreSQL connection (a backend process, authentication) costs more than the request; under
    # load that churn was a large share of the server's time (docs/performance.md). A request that finds all
    # connections busy waits for one (pool_timeout, then 503 + Retry-After).
    return sa.create_engine(
        url, pool_recycle=300, pool_size=PG_POOL_SIZE, max_overflow=0, pool_timeout=PG_POOL_TIMEOUT_S
    )


# Connections per server process: more than the concurrent ingest ceiling (max_concurrent_ingest, 16) so that
# the lookups of requests waiting at the ceiling do not queue behind it; workers x this must stay below the
# database's max_connections.
# MAMORI_PG_POOL_SIZE overrides it, e.g. for several server processes behind a load balancer on one database
# (benchmarks/ingest_lb.py runs four: 4 x 24 would exceed PostgreSQL's default max_connections of 100).
PG_POOL_SIZE = int(os.environ.get("MAMORI_PG_POOL_SIZE", "24"))
PG_POOL_TIMEOUT_S = 10.0


class _ProcessLock:
    """An exclusive ``flock`` on ``<database>.write-lock``, serialising SQLite writers across server processes
    (``workers`` > 1).

    BEGIN IMMEDIATE alone would serialise them too, but a writer that finds the database locked polls in
    SQLite's busy handler, sleeping 1, 2, 5, 10... ms between tries, and so misses most of the moments the lock
    is free; a process blocked in ``flock`` is woken when it is released. Correctness does not depend on it:
    the transaction still takes the database's own lock. POSIX only; elsewhere the busy handler remains."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def for_sqlite(cls, database: str | None) -> _ProcessLock | None:
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        try:
            import fcntl  # noqa: F401
        except ImportError:  # Windows
            return None
        return cls(f"{database}.write-lock")

    def __enter__(self) -> None:
        import fcntl

        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# A group commit stops taking waiting batches at this many events (it always takes one batch): a bound on how
# long one transaction holds the writer lock.
GROUP_MAX_EVENTS = 5000


@dataclass
class _IngestJob:
    """One batch waiting for the SQLite writer; ``outcome`` is set once its group's transaction ended."""

    device_id: str
    unique: dict[str, EventRow]
    received: int
    now: int
    facts: Mapping[str, Any] | None
    outcome: tuple[int, int] | Exception | None = None


def _take_group(pending: list[_IngestJob]) -> list[_IngestJob]:
    """The oldest waiting batches, up to GROUP_MAX_EVENTS events and at least one; removed from ``pending``."""
    events = 0
    count = 0
    for job in pending:
        if count and events + len(job.unique) > GROUP_MAX_EVENTS:
            break
        events += len(job.unique)
        count += 1
    group = pending[:count]
    del pending[:count]
    return group


class Storage:
    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite has one writer; serialising writers in-process avoids "database is locked" retries.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._process_lock = _ProcessLock.for_sqlite(self.engine.url.database) if self.is_sqlite else None
        # Single-statement lookups on every request (token -> device) need no transaction: on PostgreSQL an
        # autocommit connection saves the BEGIN and the ROLLBACK at check-in, two round trips a request.
        self._lookup_engine = (
            self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        # Run in order on every batch's new rows, inside its transaction (set by create_app; empty by itself).
        self.after_insert: tuple[AfterInsert, ...] = ()
        # SQLite group commit: batches waiting for the writer (Storage._sqlite_ingest)
        self._pending: list[_IngestJob] = []
        self._pending_lock = threading.Lock()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self._sqlite_transaction() as conn:
            yield conn

    @contextmanager
    def _sqlite_transaction(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT, under the other processes' write lock; the caller holds ``_write_lock``."""
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=True)
            if self._process_lock is None:
                with conn.begin():
                    yield conn
                return
            with self._process_lock, conn.begin():
                yield conn

    def dispose(self) -> None:
        self.engine.dispose()
        if self._process_lock is not None:
            self._process_lock.close()

    # --- readiness -------------------------------------------------------------------------------------------

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return False
        return True

    # --- credentials -----------------------------------------------------------------------------------------

    def create_enroll_secret(
        self, secret_hash: str, group: str, uses: int, expires_at: int | None, now: int
    ) -> None:
        with self.write() as conn:
            conn.execute(
                enroll_secrets.insert().values(
                    secret_hash=secret_hash,
                    group_name=group,
                    uses_left=uses,
                    expires_at=expires_at,
                    created_at=now,
                )
            )

    def enroll(
        self, secret_hash: str, device_id: str, token_hash: str, info: dict[str, Any], now: int
    ) -> str:
        """Use one use of the secret and create the device, atomically. Returns the group."""
        with self.write() as conn:
            row = conn.execute(
                sa.select(enroll_secrets).where(enroll_secrets.c.secret_hash == secret_hash).with_for_update()
            ).first()
            if row is None:
                raise EnrollRefusedError("unknown")
            if row.expires_at is not None and row.expires_at <= now:
                raise EnrollRefusedError("expired")
            used = conn.execute(
                enroll_secrets.update()
                .where(enroll_secrets.c.id == row.id, enroll_secrets.c.uses_left > 0)
                .values(uses_left=enroll_secrets.c.uses_left - 1)
            )
            if used.rowcount != 1:
                raise EnrollRefusedError("used up")
            conn.execute(
                devices.insert().values(
                    id=device_id,
                    token_hash=token_hash,
                    group_name=row.group_name,
                    hostname=info.get("hostname"),
                    os=info.get("os"),
                    enrolled_at=now,
                )
            )
            return str(row.group_name)

    def device_by_token(self, token_hash: str) -> Device | None:
        with self._lookup_engine.connect() as conn:
            row = conn.execute(
                sa.select(devices.c.id, devices.c.group_name, devices.c.revoked).where(
                    devices.c.token_hash == token_hash
                )
            ).first()
        return Device(row.id, row.group_name, bool(row.revoked)) if row else None

    def create_admin_token(self, token_hash: str, now: int) -> None:
        with self.write() as conn:
            conn.execute(admin_tokens.insert().values(token_hash=token_hash, created_at=now))

    def is_admin(self, token_hash: str) -> bool:
        with self._lookup_engine.connect() as conn:
            return (
                conn.execute(
                    sa.select(admin_tokens.c.id).where(admin_tokens.c.token_hash == token_hash)
                ).first()
                is not None
            )

    # --- policies --------------------------------------------------------------------------------------------

    def current_policy(self, group: str) -> sa.Row[Any] | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(policies)
                .where(policies.c.group_name == group)
                .order_by(policies.c.version.desc())
                .limit(1)
            ).first()

    def store_policy(
        self,
        group: str,
        policy_id: str,
        version: int,
        *,
        bundle: bytes,
        etag: str,
        now: int,
        also: Callable[[Connection], object] | None = None,
    ) -> None:
        """Store a group's new policy version; ``also`` runs in the same transaction (the audit entry)."""
        with self.write() as conn:
            current = conn.execute(
                sa.select(policies.c.version, policies.c.policy_id)
                .where(policies.c.group_name == group)
                .order_by(policies.c.version.desc())
                .limit(1)
            ).first()
            if current is not None and version <= current.version:
                raise PolicyConflictError(
                    f"group {group} already has version {current.version}; publish version {current.version + 1} "
                    "or higher"
                )
            conn.execute(
                policies.insert().values(
                    group_name=group,
                    policy_id=policy_id,
                    version=version,
                    bundle=bundle,
                    etag=etag,
                    uploaded_at=now,
                )
            )
            if also is not None:
                also(conn)

    # --- ingest ----------------------------------------------------------------------------------------------

    def _insert_events(self, conn: Connection, rows: list[tuple[Any, ...]]) -> set[str]:
        """SQLite: INSERT ... ON CONFLICT (uid) DO NOTHING; returns the uids actually inserted.

        ``rows`` are tuples in ``_EVENT_COLUMNS`` order, uid first."""
        # Writers are serialised (self._write_lock and BEGIN IMMEDIATE), so nothing else changes the table
        # under us. The common case, a batch of new events, is inserted in one go: when every row was
        # inserted we know which ones. Otherwise (a resent batch) undo it, look the duplicates up and insert
        # only the rest, so the inserted uids are exact.
        conn.exec_driver_sql("SAVEPOINT ingest")
        if self._sqlite_insert(conn, rows) == len(rows):
            conn.exec_driver_sql("RELEASE ingest")
            return {r[0] for r in rows}
        conn.exec_driver_sql("ROLLBACK TO ingest")
        conn.exec_driver_sql("RELEASE ingest")
        uids = [r[0] for r in rows]
        existing: set[str] = set()
        for i in range(0, len(uids), 500):
            chunk = uids[i : i + 500]
            existing.update(conn.execute(sa.select(events.c.uid).where(events.c.uid.in_(chunk))).scalars())
        fresh = [r for r in rows if r[0] not in existing]
        self._sqlite_insert(conn, fresh)
        return {r[0] for r in fresh}

    @staticmethod
    def _sqlite_insert(conn: Connection, rows: list[tuple[Any, ...]]) -> int:
        """Multi-row INSERTs; returns the number of rows inserted.

        Not ``executemany``: pysqlite releases the GIL around every ``sqlite3_step``, once per row, and with
        another thread parsing the next batch each re-acquisition waits up to the switch interval (5 ms), which
        made a 500-row executemany several times slower in the server than alone. One step per statement
        avoids that convoy."""
        inserted = 0
        start = 0
        for size in _SQLITE_CHUNKS:
            sql = _sqlite_insert_events(size)
            while len(rows) - start >= size:
                params = tuple(v for r in rows[start : start + size] for v in r)
                inserted += conn.exec_driver_sql(sql, params).rowcount
                start += size
        return inserted

    def ingest(
        self,
        device_id: str,
        batch: Sequence[EventRow],
        now: int,
        facts: Mapping[str, Any] | None = None,
    ) -> tuple[int, int]:
        """Store a batch; returns (accepted, duplicate). Sequence gaps are recorded in the same transaction, and
        the ``after_insert`` hooks run on the newly stored rows in it too (``facts``: uid -> the data ingest
        parsed already; without them a hook parses the bodies it needs)."""
        unique: dict[str, EventRow] = {}
        for row in batch:
            unique.setdefault(row.uid, row)
        if not self.is_sqlite:
            return self._pg_ingest(device_id, list(unique.values()), len(batch), now, facts)
        return self._sqlite_ingest(_IngestJob(device_id, unique, len(batch), now, facts))

    def _sqlite_ingest(self, job: _IngestJob) -> tuple[int, int]:
        """Group commit: the thread that gets the writer lock stores every batch waiting for it (up to
        GROUP_MAX_EVENTS events), each in a savepoint of one transaction, and commits once; the others find
        their batch done when they get the lock. One BEGIN IMMEDIATE, one COMMIT (one fsync) and one hand-over of
        the lock for many concurrent batches, where each batch took its own. A batch whose statements fail is
        rolled back to its savepoint and its error raised in its own request; a failed COMMIT fails them all.
        The answer is built only after the COMMIT, so "200 only after commit" holds for each batch."""
        assert self._write_lock is not None
        with self._pending_lock:
            self._pending.append(job)
        while job.outcome is None:
            with self._write_lock:
                if job.outcome is not None:
                    break
                with self._pending_lock:
                    group = _take_group(self._pending)
                self._commit_group(group)
        if isinstance(job.outcome, Exception):
            raise job.outcome
        return job.outcome

    def _commit_group(self, group: list[_IngestJob]) -> None:
        outcomes: list[tuple[int, int] | Exception] = []
        try:
            with self._sqlite_transaction() as conn:
                for job in group:
                    conn.exec_driver_sql("SAVEPOINT batch")
                    try:
                        outcomes.append(self._sqlite_ingest_one(conn, job))
                    except Exception as err:  # this batch only; the others of the group stay
                        conn.exec_driver_sql("ROLLBACK TO batch")
                        outcomes.append(err)
                    conn.exec_driver_sql("RELEASE batch")
        except Exception as err:  # BEGIN or COMMIT failed: nothing of the group was stored
            outcomes = [err] * len(group)
        for job, outcome in zip(group, outcomes, strict=True):
            job.outcome = outcome

    def _sqlite_ingest_one(self, conn: Connection, job: _IngestJob) -> tuple[int, int]:
        device_id, unique, now, facts = job.device_id, job.unique, job.now, job.facts
        device = conn.execute(_select_max_sequence(), {"device_id": device_id}).first()
        previous_max = int(device.max_sequence) if device else 0
        inserted: set[str] = set()
        if unique:
            rows = [
                (
                    r.uid,
                    device_id,
                    r.sequence,
                    r.class_uid,
                    r.type_uid,
                    r.severity_id,
                    r.event_code,
                    r.time,
                    now,
                    r.body,
                )
                for r in unique.values()
            ]
            inserted = self._insert_events(conn, rows)
        seqs = [r.sequence for r in unique.values() if r.uid in inserted]
        new_max = self._record_gaps(conn, device_id, previous_max, seqs, now)
        conn.execute(_update_device_seen(), {"device_id": device_id, "new_max": new_max, "seen": now})
        self._after_insert(conn, device_id, [r for r in unique.values() if r.uid in inserted], now, facts)
        return len(inserted), job.received - len(inserted)

    def _after_insert(
        self,
        conn: Connection,
        device_id: str,
        rows: list[EventRow],
        now: int,
        facts: Mapping[str, Any] | None,
    ) -> None:
        for hook in self.after_insert:
            hook(conn, device_id, rows, now, facts)

    def _pg_ingest(
        self,
        device_id: str,
        unique: list[EventRow],
        received: int,
        now: int,
        facts: Mapping[str, Any] | None = None,
    ) -> tuple[int, int]:
        """PostgreSQL ingest: BEGIN, one statement (insert, lock and raise the high-water mark), COMMIT; gap
        rows, rare, in the same transaction. Three round trips a batch where there were five."""
        params = {
            "device_id": device_id,
            "now": now,
            "uid": [r.uid for r in unique],
            "sequence": [r.sequence for r in unique],
            "class_uid": [r.class_uid for r in unique],
            "type_uid": [r.type_uid for r in unique],
            "severity_id": [r.severity_id for r in unique],
            "event_code": [r.event_code for r in unique],
            "time": [r.time for r in unique],
            "body": [r.body for r in unique],
        }
        with self.write() as conn:
            previous, uids, seqs = conn.exec_driver_sql(_pg_ingest_sql(), params).one()
            self._record_gaps(conn, device_id, int(previous or 0), seqs, now)
            fresh = set(uids)
            self._after_insert(conn, device_id, [r for r in unique if r.uid in fresh], now, facts)
        return len(uids), received - len(uids)

    def _record_gaps(
        self, conn: Connection, device_id: str, previous_max: int, seqs: list[int], now: int
    ) -> int:
        """Open a gap row for each run of sequence numbers skipped, close the gaps late events fill; returns the
        new high-water mark."""
        opened, new_max = new_gaps(previous_max, seqs)
        late = [s for s in seqs if s <= previous_max]
        if late:
            self._fill_gaps(conn, device_id, late, now)
        if opened:
            conn.execute(
                gaps.insert(),
                [
                    {"device_id": device_id, "first_seq": g.first, "last_seq": g.last, "detected_at": now}
                    for g in opened
                ],
            )
        return new_max

    def _fill_gaps(self, conn: Connection, device_id: str, late: list[int], now: int) -> None:
        low, high = min(late), max(late)
        rows = conn.execute(
            sa.select(gaps).where(
                gaps.c.device_id == device_id, gaps.c.last_seq >= low, gaps.c.first_seq <= high
            )
        ).all()
        if not rows:
            return
        remaining = fill_gaps([Gap(int(r.first_seq), int(r.last_seq)) for r in rows], late)
        conn.execute(gaps.delete().where(gaps.c.id.in_([r.id for r in rows])))
        if remaining:
            conn.execute(
                gaps.insert(),
                [
                    {"device_id": device_id, "first_seq": g.first, "last_seq": g.last, "detected_at": now}
                    for g in remaining
                ],
            )

    def checkin(self, device_id: str, summary: dict[str, Any], now: int) -> None:
        values: dict[str, Any] = {"last_seen": now, "stopped": bool(summary.get("stopping", False))}
        for key in (
            "state",
            "stage",
            "hostname",
            "agent_version",
            "policy_id",
            "policy_version",
            "heartbeat_s",
            "os",
        ):
            if summary.get(key) is not None:
                values[key] = summary[key]
        if summary.get("failing") is not None:
            values["failing"] = json.dumps(summary["failing"])
        with self.write() as conn:
            conn.execute(devices.update().where(devices.c.id == device_id).values(**values))

    # --- queries ---------------------------------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(devices).order_by(devices.c.enrolled_at)).mappings().all()
            gap_rows = conn.execute(
                sa.select(
                    gaps.c.device_id,
                    sa.func.count().label("n"),
                    sa.func.sum(gaps.c.last_seq - gaps.c.first_seq + 1).label("missing"),
                ).group_by(gaps.c.device_id)
            ).all()
        gap_by_device = {r.device_id: (int(r.n), int(r.missing or 0)) for r in gap_rows}
        result = []
        for row in rows:
            item = {k: v for k, v in row.items() if k != "token_hash"}
            item["failing"] = json.loads(row["failing"]) if row["failing"] else []
            item["gaps"], item["missing_events"] = gap_by_device.get(row["id"], (0, 0))
            result.append(item)
        return result

    def gaps_of(self, device_id: str) -> list[Gap]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(gaps.c.first_seq, gaps.c.last_seq)
                .where(gaps.c.device_id == device_id)
                .order_by(gaps.c.first_seq)
            ).all()
        return [Gap(int(r.first_seq), int(r.last_seq)) for r in rows]

    def events(
        self,
        *,
        device: str | None = None,
        class_uid: int | None = None,
        since_ms: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        query = sa.select(events.c.body)
        if device is not None:
            query = query.where(events.c.device_id == device)
        if class_uid is not None:
            query = query.where(events.c.class_uid == class_uid)
        if since_ms is not None:
            query = query.where(events.c.time >= since_ms)
        query = query.order_by(events.c.time.desc(), events.c.device_id, events.c.sequence.desc()).limit(
            limit
        )
        with self.engine.connect() as conn:
            return [json.loads(r[0]) for r in conn.execute(query)]

    def count_events(self, device: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(events)
        if device is not None:
            query = query.where(events.c.device_id == device)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
