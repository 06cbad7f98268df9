"""The forwarders' durable outboxes in the server database (SPEC.md, Server API: forwarders, at least once).

Capture is a database trigger on ``events`` (installed while forwarders are configured): every event stored by
ingest is written to ``forward_pending`` in the ingest's own transaction, so an event the server committed is
an event some forwarder will deliver, whatever happens to the process right after the commit (SIGKILL
included). The forwarding service moves pending rows into one ``forward_outbox`` row per forwarder (one
transaction: pending rows are deleted only with their outbox rows written); a row leaves a forwarder's outbox
only when its receiver took it, or is kept as a dead letter (``dead``, counted, never deleted silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from server.storage import Storage, events, metadata

forward_pending = sa.Table(
    "forward_pending",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("uid", sa.String(36), nullable=False),
)

forward_outbox = sa.Table(
    "forward_outbox",
    metadata,
    sa.Column("forwarder", sa.String(64), primary_key=True),
    sa.Column("uid", sa.String(36), primary_key=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("dead", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.Index("ix_forward_outbox_due", "forwarder", "dead", "next_at"),
)

_SQLITE_TRIGGER = (
    "CREATE TRIGGER IF NOT EXISTS mamori_forward_capture AFTER INSERT ON events "
    "BEGIN INSERT INTO forward_pending (uid) VALUES (NEW.uid); END"
)
_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION mamori_forward_capture() RETURNS trigger AS $$ "
    "BEGIN INSERT INTO forward_pending (uid) VALUES (NEW.uid); RETURN NULL; END $$ LANGUAGE plpgsql"
)
_PG_TRIGGER = (
    "CREATE TRIGGER mamori_forward_capture AFTER INSERT ON events "
    "FOR EACH ROW EXECUTE FUNCTION mamori_forward_capture()"
)


@dataclass(frozen=True)
class Due:
    uid: str
    attempts: int
    body: str


@dataclass(frozen=True)
class Counts:
    queued: int  # waiting for delivery (including retries)
    dead: int  # dead letters: refused by the receiver for good, or out of attempts


def set_capture(storage: Storage, enabled: bool) -> None:
    """Install the capture trigger (forwarders configured) or remove it and its backlog (none configured)."""
    with storage.write() as conn:
        if storage.is_sqlite:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS mamori_forward_capture")
            if enabled:
                conn.exec_driver_sql(_SQLITE_TRIGGER)
        else:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS mamori_forward_capture ON events")
            if enabled:
                conn.exec_driver_sql(_PG_FUNCTION)
                conn.exec_driver_sql(_PG_TRIGGER)
        if not enabled:
            conn.execute(forward_pending.delete())


def distribute(storage: Storage, forwarders: Sequence[str], limit: int = 5000) -> int:
    """Move up to ``limit`` captured events into every forwarder's outbox; returns how many moved."""
    with storage.write() as conn:
        query = (
            sa.select(forward_pending.c.id, forward_pending.c.uid).order_by(forward_pending.c.id).limit(limit)
        )
        if not storage.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        if not rows:
            return 0
        uids = sorted({str(r.uid) for r in rows})
        existing = {
            (str(r.forwarder), str(r.uid))
            for r in conn.execute(
                sa.select(forward_outbox.c.forwarder, forward_outbox.c.uid).where(
                    forward_outbox.c.uid.in_(uids)
                )
            )
        }
        fresh = [{"forwarder": f, "uid": u} for f in forwarders for u in uids if (f, u) not in existing]
        if fresh:
            conn.execute(forward_outbox.insert(), fresh)
        conn.execute(forward_pending.delete().where(forward_pending.c.id.in_([r.id for r in rows])))
        return len(rows)


def due(storage: Storage, forwarder: str, now_ms: int, limit: int) -> list[Due]:
    """The oldest deliverable events of ``forwarder`` whose next attempt is due (event time order)."""
    query = (
        sa.select(forward_outbox.c.uid, forward_outbox.c.attempts, events.c.body)
        .join(events, events.c.uid == forward_outbox.c.uid)
        .where(
            forward_outbox.c.forwarder == forwarder,
            forward_outbox.c.dead == sa.false(),
            forward_outbox.c.next_at <= now_ms,
        )
        .order_by(events.c.time, events.c.uid)
        .limit(limit)
    )
    with storage.engine.connect() as conn:
        return [Due(str(r.uid), int(r.attempts), str(r.body)) for r in conn.execute(query)]


def delivered(storage: Storage, forwarder: str, uids: Sequence[str]) -> None:
    if not uids:
        return
    with storage.write() as conn:
        for i in range(0, len(uids), 500):
            conn.execute(
                forward_outbox.delete().where(
                    forward_outbox.c.forwarder == forwarder, forward_outbox.c.uid.in_(uids[i : i + 500])
                )
            )


def failed(
    storage: Storage, forwarder: str, uids: Sequence[str], *, next_at: int, error: str, dead: bool
) -> None:
    """A failed attempt: try again at ``next_at``, or keep as a dead letter."""
    if not uids:
        return
    with storage.write() as conn:
        for i in range(0, len(uids), 500):
            conn.execute(
                forward_outbox.update()
                .where(forward_outbox.c.forwarder == forwarder, forward_outbox.c.uid.in_(uids[i : i + 500]))
                .values(
                    attempts=forward_outbox.c.attempts + 1, next_at=next_at, dead=dead, last_error=error[:200]
                )
            )


def counts(storage: Storage) -> dict[str, Counts]:
    query = sa.select(forward_outbox.c.forwarder, forward_outbox.c.dead, sa.func.count()).group_by(
        forward_outbox.c.forwarder, forward_outbox.c.dead
    )
    out: dict[str, list[int]] = {}
    with storage.engine.connect() as conn:
        for name, dead, n in conn.execute(query):
            out.setdefault(str(name), [0, 0])[1 if dead else 0] += int(n)
    return {k: Counts(v[0], v[1]) for k, v in out.items()}


def pending_capture(storage: Storage) -> int:
    with storage.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(forward_pending)).scalar_one())


__all__ = [
    "Counts",
    "Due",
    "counts",
    "delivered",
    "distribute",
    "due",
    "failed",
    "forward_outbox",
    "forward_pending",
    "pending_capture",
    "set_capture",
]
