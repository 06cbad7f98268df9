"""Alerts in the server database (docs/server-api.md, "Alerts"): the raised alerts, the per-check state the
check rules need, and each alert's delivery queue.

An alert is raised once: its ``key`` names its cause (the event, the silence, the gap) and is unique, and
raising is ``INSERT ... ON CONFLICT (key) DO NOTHING``, so several server processes on one PostgreSQL that see
the same cause raise one alert between them. The alert's delivery rows are written in the same transaction, one
per channel, into the forwarders' durable outbox (``forward_outbox``, server/forward_store.py), whose attempts,
backoff and dead letters the alert delivery shares.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.forward_store import Due, forward_outbox
from server.storage import Storage, devices, gaps, metadata

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("key", sa.String(200), nullable=False, unique=True),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("device_id", sa.String(64), nullable=True),
    sa.Column("subject", sa.String(64), nullable=True),  # the check id, when the rule is about one
    sa.Column("cause_at", sa.BigInteger, nullable=False),  # when the cause happened (epoch ms)
    sa.Column("raised_at", sa.BigInteger, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    sa.Column("acked_at", sa.BigInteger, nullable=True),
    sa.Column("acked_by", sa.String(128), nullable=True),
    sa.Index("ix_alerts_rule_device", "rule", "device_id"),
    sa.Index("ix_alerts_raised", "raised_at"),
)

# Per device and check: since when it fails and since when it blocks (None: not blocking). A row exists while
# the check fails, so a check that keeps failing across agent restarts raises no second alert.
alert_checks = sa.Table(
    "alert_checks",
    metadata,
    sa.Column("device_id", sa.String(64), primary_key=True),
    sa.Column("check_id", sa.String(64), primary_key=True),
    sa.Column("failing_since", sa.BigInteger, nullable=False),
    sa.Column("blocked_since", sa.BigInteger, nullable=True),
    sa.Index("ix_alert_checks_blocked", "blocked_since"),
)


@dataclass(frozen=True)
class NewAlert:
    key: str
    rule: str
    device_id: str | None
    cause_at: int
    detail: dict[str, Any]
    subject: str | None = None


@dataclass(frozen=True)
class Alert:
    id: str
    rule: str
    device_id: str | None
    subject: str | None
    cause_at: int
    raised_at: int
    detail: dict[str, Any]
    acked_at: int | None
    acked_by: str | None
    hostname: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "device_id": self.device_id,
            "hostname": self.hostname,
            "check_id": self.subject,
            "cause_at": self.cause_at,
            "raised_at": self.raised_at,
            "detail": self.detail,
            "acked_at": self.acked_at,
            "acked_by": self.acked_by,
        }


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _insert_new(
    conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]], key: str, out: str
) -> set[str]:
    """INSERT ... ON CONFLICT (key) DO NOTHING for many rows; returns column ``out`` of the rows inserted
    (RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT through SQLAlchemy)."""
    if not rows:
        return set()
    if conn.dialect.name == "postgresql":
        inserted = conn.exec_driver_sql(_pg_unnest_insert(table, key, out), _arrays(table, rows)).scalars()
        return {str(v) for v in inserted}
    # One statement for many parameter sets: SQLAlchemy compiles it once and sends the rows in batches; a
    # multi-row VALUES built per call was compiled every time (most of the cost).
    return {str(v) for v in conn.execute(_sqlite_insert_new(table, key, out), list(rows)).scalars()}


@functools.cache
def _sqlite_insert_new(table: sa.Table, key: str, out: str) -> Any:
    """Built once: building the statement and its cache key cost more than running it for a small batch."""
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[out])


_PG_TYPES = {sa.String: "varchar", sa.Text: "text", sa.BigInteger: "bigint"}


@functools.cache
def _pg_unnest_insert(table: sa.Table, key: str | None, out: str | None) -> str:
    """PostgreSQL: many rows as one array per column (``unnest``), so the text is the same whatever the count
    (psycopg converts and prepares it once; a VALUES list of hundreds of rows is converted on every call).
    Built from the table definition only, never from data."""
    names = [c.name for c in table.columns]
    arrays = ", ".join(f"%({c.name})s::{_PG_TYPES[type(c.type)]}[]" for c in table.columns)
    sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays})"  # noqa: S608
    if key is not None:
        sql += f" ON CONFLICT ({key}) DO NOTHING"
    if out is not None:
        sql += f" RETURNING {out}"
    return sql


def _arrays(table: sa.Table, rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    return {c.name: [r.get(c.name) for r in rows] for c in table.columns}


def raise_many(
    conn: Connection, found: Sequence[NewAlert], channels: Sequence[str], now_ms: int
) -> list[str]:
    """Raise each alert in the caller's transaction unless its key was raised before, and queue the new ones on
    every channel (a few statements whatever the count). Returns the new alerts' ids."""
    rows: dict[str, dict[str, Any]] = {}
    for alert in found:
        key = alert.key[:200]
        rows.setdefault(
            key,
            {
                "id": str(uuid.uuid4()),
                "key": key,
                "rule": alert.rule,
                "device_id": alert.device_id,
                "subject": alert.subject,
                "cause_at": alert.cause_at,
                "raised_at": now_ms,
                "detail": json.dumps(alert.detail, ensure_ascii=False, sort_keys=True),
            },
        )
    if not rows:
        return []
    inserted = _insert_new(conn, alerts, list(rows.values()), "key", "id")
    raised = [r["id"] for r in rows.values() if r["id"] in inserted]
    queue = [{"forwarder": c, "uid": alert_id} for alert_id in raised for c in channels]
    if queue:
        conn.execute(forward_outbox.insert(), queue)
    return raised


def raise_alert(conn: Connection, alert: NewAlert, channels: Sequence[str], now_ms: int) -> str | None:
    """Raise one alert in the caller's transaction; its id, or None when its key was raised before."""
    raised = raise_many(conn, [alert], channels, now_ms)
    return raised[0] if raised else None


def raise_all(storage: Storage, found: Sequence[NewAlert], channels: Sequence[str], now_ms: int) -> list[str]:
    """Raise ``found`` in a transaction of its own; returns the new alerts' ids."""
    if not found:
        return []
    with storage.write() as conn:
        return raise_many(conn, found, channels, now_ms)


# --- check state (newly failing, blocks) ------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One posture result as the check rules need it."""

    check_id: str
    failing: bool
    blocking: bool
    time: int
    event_uid: str


CheckState = tuple[int, int | None]  # (failing since, blocked since or None)


def advance(
    before: dict[str, CheckState], findings: Sequence[Finding]
) -> tuple[dict[str, CheckState | None], list[Finding]]:
    """Pure: the check states after ``findings`` (in event order; None: no longer failing) and the findings that
    started a failure."""
    state: dict[str, CheckState | None] = dict(before)
    started: list[Finding] = []
    for f in findings:
        current = state.get(f.check_id)
        if not f.failing:
            state[f.check_id] = None
        elif current is None:
            started.append(f)
            state[f.check_id] = (f.time, f.time if f.blocking else None)
        else:
            since, blocked = current
            state[f.check_id] = (since, (f.time if blocked is None else blocked) if f.blocking else None)
    return state, started


@functools.cache
def _check_states_query() -> Any:
    """Built once (an expanding IN): the statement and its cache key were most of a small batch's cost."""
    return sa.select(
        alert_checks.c.check_id, alert_checks.c.failing_since, alert_checks.c.blocked_since
    ).where(
        alert_checks.c.device_id == sa.bindparam("device_id"),
        alert_checks.c.check_id.in_(sa.bindparam("checks", expanding=True)),
    )


@functools.cache
def _lock_device() -> Any:
    return sa.select(devices.c.id).where(devices.c.id == sa.bindparam("device_id")).with_for_update()


def _check_states(conn: Connection, device_id: str, checks: Sequence[str]) -> dict[str, CheckState]:
    states: dict[str, CheckState] = {}
    for i in range(0, len(checks), 500):
        params = {"device_id": device_id, "checks": list(checks[i : i + 500])}
        for check_id, failing_since, blocked_since in conn.execute(_check_states_query(), params):
            blocked = None if blocked_since is None else int(blocked_since)
            states[str(check_id)] = (int(failing_since), blocked)
    return states


def record_findings(conn: Connection, device_id: str, findings: Sequence[Finding]) -> list[Finding]:
    """Move the device's check state along ``findings`` (in event order) in the caller's transaction; returns
    the findings that started a failure. A handful of statements per batch, however many findings."""
    if not findings:
        return []
    if conn.dialect.name == "postgresql":
        # Batches of one device in two server processes: one after the other (SQLite has one writer anyway).
        conn.execute(_lock_device(), {"device_id": device_id})
    before = _check_states(conn, device_id, sorted({f.check_id for f in findings}))
    after, started = advance(before, findings)
    changed = [c for c, v in after.items() if v != before.get(c)]
    stale = [c for c in changed if c in before]
    for i in range(0, len(stale), 500):
        conn.execute(
            alert_checks.delete().where(
                alert_checks.c.device_id == device_id, alert_checks.c.check_id.in_(stale[i : i + 500])
            )
        )
    rows = [
        {"device_id": device_id, "check_id": c, "failing_since": v[0], "blocked_since": v[1]}
        for c in changed
        if (v := after[c]) is not None
    ]
    if rows and conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_pg_unnest_insert(alert_checks, None, None), _arrays(alert_checks, rows))
    elif rows:
        conn.execute(alert_checks.insert(), rows)
    return started


def _not_raised(rule: str, device: Any, cause: Any) -> Any:
    return ~sa.exists().where(alerts.c.rule == rule, alerts.c.device_id == device, alerts.c.cause_at == cause)


def long_blocks(storage: Storage, blocked_before: int, limit: int = 1000) -> list[tuple[str, str, int]]:
    """(device, check, blocked since) of blocks that began before ``blocked_before`` and have no alert yet."""
    query = (
        sa.select(alert_checks.c.device_id, alert_checks.c.check_id, alert_checks.c.blocked_since)
        .where(
            alert_checks.c.blocked_since.is_not(None),
            alert_checks.c.blocked_since <= blocked_before,
            ~sa.exists().where(
                alerts.c.rule == "block_long",
                alerts.c.device_id == alert_checks.c.device_id,
                alerts.c.subject == alert_checks.c.check_id,
                alerts.c.cause_at == alert_checks.c.blocked_since,
            ),
        )
        .limit(limit)
    )
    with storage.engine.connect() as conn:
        return [(str(r[0]), str(r[1]), int(r[2])) for r in conn.execute(query)]


def silent_devices(storage: Storage, seen_before: int, limit: int = 1000) -> list[tuple[str, int]]:
    """(device, last seen) of devices not heard from since ``seen_before``, not stopped cleanly, not revoked,
    with no alert for this silence yet."""
    query = (
        sa.select(devices.c.id, devices.c.last_seen)
        .where(
            devices.c.last_seen.is_not(None),
            devices.c.last_seen <= seen_before,
            devices.c.stopped == sa.false(),
            devices.c.revoked == sa.false(),
            _not_raised("device_silent", devices.c.id, devices.c.last_seen),
        )
        .limit(limit)
    )
    with storage.engine.connect() as conn:
        return [(str(r[0]), int(r[1])) for r in conn.execute(query)]


def recent_gaps(storage: Storage, detected_since: int, limit: int = 1000) -> list[tuple[str, int, int, int]]:
    """(device, first, last, detected at) of sequence gaps recorded since ``detected_since`` (server/status.py:
    a gap a late event splits is recorded again as its parts; the caller keys alerts by the first sequence)."""
    query = (
        sa.select(gaps.c.device_id, gaps.c.first_seq, gaps.c.last_seq, gaps.c.detected_at)
        .where(gaps.c.detected_at >= detected_since)
        .order_by(gaps.c.id)
        .limit(limit)
    )
    with storage.engine.connect() as conn:
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in conn.execute(query)]


def gap_alerted(storage: Storage, device_id: str, first: int, last: int) -> bool:
    """Whether an earlier gap alert of the device already covers ``first``..``last`` (the part of a split gap)."""
    query = sa.select(alerts.c.detail).where(alerts.c.rule == "sequence_gap", alerts.c.device_id == device_id)
    with storage.engine.connect() as conn:
        for (detail,) in conn.execute(query):
            data = json.loads(detail)
            if int(data.get("first", 0)) <= first and last <= int(data.get("last", -1)):
                return True
    return False


# --- reading, acknowledging, delivering --------------------------------------------------------------------


def _alert(row: Any) -> Alert:
    return Alert(
        str(row.id),
        str(row.rule),
        row.device_id,
        row.subject,
        int(row.cause_at),
        int(row.raised_at),
        json.loads(row.detail),
        None if row.acked_at is None else int(row.acked_at),
        row.acked_by,
        row.hostname,
    )


def _select() -> Any:
    return sa.select(alerts, devices.c.hostname).select_from(
        alerts.outerjoin(devices, devices.c.id == alerts.c.device_id)
    )


def list_alerts(
    storage: Storage,
    *,
    open_only: bool = True,
    rule: str | None = None,
    device_id: str | None = None,
    since_ms: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Alert], int]:
    """Alerts newest first, and how many match in all."""
    conditions: list[sa.ColumnElement[bool]] = []
    if open_only:
        conditions.append(alerts.c.acked_at.is_(None))
    if rule:
        conditions.append(alerts.c.rule == rule)
    if device_id:
        conditions.append(alerts.c.device_id == device_id)
    if since_ms is not None:
        conditions.append(alerts.c.raised_at >= since_ms)
    query = _select().where(*conditions).order_by(alerts.c.raised_at.desc(), alerts.c.id)
    count = sa.select(sa.func.count()).select_from(alerts).where(*conditions)
    with storage.engine.connect() as conn:
        rows = conn.execute(query.limit(limit).offset(offset)).all()
        total = int(conn.execute(count).scalar_one())
    return [_alert(r) for r in rows], total


def get_alert(storage: Storage, alert_id: str) -> Alert | None:
    with storage.engine.connect() as conn:
        row = conn.execute(_select().where(alerts.c.id == alert_id)).first()
    return _alert(row) if row is not None else None


def acknowledge(conn: Connection, alert_id: str, by: str, now_ms: int) -> bool:
    """Acknowledge an open alert in the caller's transaction; False when it is unknown or acknowledged."""
    done = conn.execute(
        alerts.update()
        .where(alerts.c.id == alert_id, alerts.c.acked_at.is_(None))
        .values(acked_at=now_ms, acked_by=by[:128])
    )
    return bool(done.rowcount == 1)


def claim(storage: Storage, channel: str, now_ms: int, lease_ms: int, limit: int) -> list[Due]:
    """The channel's due alerts, oldest first, leased for ``lease_ms`` (their next attempt moved past the
    lease) so another server process does not send them at the same time. The body is the alert as JSON."""
    query = (
        sa.select(forward_outbox.c.uid, forward_outbox.c.attempts)
        .where(
            forward_outbox.c.forwarder == channel,
            forward_outbox.c.dead == sa.false(),
            forward_outbox.c.next_at <= now_ms,
        )
        .order_by(forward_outbox.c.next_at, forward_outbox.c.uid)
        .limit(limit)
    )
    with storage.engine.connect() as conn:
        # A read first: the delivery thread asks every fraction of a second, and a write transaction each time
        # would queue behind ingest for nothing on SQLite (one writer).
        if conn.execute(query).first() is None:
            return []
    with storage.write() as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        claimed = {str(r.uid): int(r.attempts) for r in conn.execute(query)}
        if not claimed:
            return []
        conn.execute(
            forward_outbox.update()
            .where(forward_outbox.c.forwarder == channel, forward_outbox.c.uid.in_(list(claimed)))
            .values(next_at=now_ms + lease_ms)
        )
        rows = conn.execute(_select().where(alerts.c.id.in_(list(claimed)))).all()
    found = {str(r.id): _alert(r) for r in rows}
    return [
        Due(uid, attempts, json.dumps(found[uid].as_json(), ensure_ascii=False, sort_keys=True))
        for uid, attempts in claimed.items()
        if uid in found
    ]


def give_up(storage: Storage, channel: str, max_attempts: int) -> int:
    """Turn the channel's rows that used up their attempts into dead letters; returns how many."""
    spent = sa.and_(
        forward_outbox.c.forwarder == channel,
        forward_outbox.c.dead == sa.false(),
        forward_outbox.c.attempts >= max_attempts,
    )
    with storage.engine.connect() as conn:  # a read first, as in claim(): usually there is nothing to do
        if conn.execute(sa.select(forward_outbox.c.uid).where(spent).limit(1)).first() is None:
            return 0
    with storage.write() as conn:
        done = conn.execute(
            forward_outbox.update()
            .where(spent)
            .values(dead=True, last_error=f"gave up after {max_attempts} attempts")
        )
    return int(done.rowcount or 0)


__all__ = [
    "Alert",
    "Finding",
    "NewAlert",
    "acknowledge",
    "advance",
    "alert_checks",
    "alerts",
    "claim",
    "gap_alerted",
    "get_alert",
    "give_up",
    "list_alerts",
    "long_blocks",
    "raise_alert",
    "raise_all",
    "raise_many",
    "recent_gaps",
    "record_findings",
    "silent_devices",
]
