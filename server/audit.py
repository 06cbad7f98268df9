"""The admin audit log: what admins did (sign-in, tokens, secrets, devices, policies, exports, alerts), tamper-evident.

Each row carries ``hash = SHA-256(prev_hash || canonical content)`` where the canonical content is the row's id,
time, actor, action, target and detail as sorted, compact JSON, and ``prev_hash`` is the previous row's hash
(64 zeros for the first). :func:`verify` recomputes the chain, so a row edited in the database, deleted from the
middle, or moved (its id changed) breaks it from that row on. Removing the newest rows leaves a shorter chain
that still verifies: the head (:func:`head`: last id and hash) is what an admin keeps elsewhere to detect that.

Appends are serialised so two server processes never chain two rows to the same predecessor: PostgreSQL takes a
transaction-scoped advisory lock, SQLite's writers already hold the database write lock (``BEGIN IMMEDIATE`` in
:meth:`server.storage.Storage.write`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.storage import Storage, metadata

GENESIS = "0" * 64
# pg_advisory_xact_lock key of the audit chain: an arbitrary constant, unique among the server's advisory locks.
_PG_LOCK_KEY = 0x6D616D6F7269  # "mamori"

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(255), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Index("ix_audit_log_at", "at"),
)


@dataclass(frozen=True)
class Entry:
    id: int
    at: int
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class Broken:
    """The first entry whose hash does not follow from its content and its predecessor."""

    id: int
    reason: str

    def __str__(self) -> str:
        return f"audit entry {self.id}: {self.reason}"


def canonical(entry_id: int, at: int, actor: str, action: str, *, target: str, detail: str) -> bytes:
    """The bytes an entry's hash covers (besides the previous hash). ``detail`` is the stored JSON text."""
    content = {"id": entry_id, "at": at, "actor": actor, "action": action, "target": target, "detail": detail}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain_hash(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + content).hexdigest()


def _detail_text(detail: Mapping[str, Any] | None) -> str:
    return json.dumps(
        dict(detail or {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def append(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    now_ms: int,
) -> int:
    """Append one entry inside the caller's write transaction (``storage.write()``), so the entry commits with
    the change it records. Returns the entry's id."""
    if conn.dialect.name == "postgresql":
        # Held until this transaction ends: appends of all processes follow one another.
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    last = conn.execute(
        sa.select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
    ).first()
    prev_hash = str(last.hash) if last is not None else GENESIS
    entry_id = int(last.id) + 1 if last is not None else 1
    text = _detail_text(detail)
    actor, action, target = actor[:128], action[:64], target[:255]
    digest = chain_hash(prev_hash, canonical(entry_id, now_ms, actor, action, target=target, detail=text))
    conn.execute(
        audit_log.insert().values(
            id=entry_id,
            at=now_ms,
            actor=actor,
            action=action,
            target=target,
            detail=text,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    return entry_id


def record(
    storage: Storage,
    *,
    actor: str,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    now_ms: int,
) -> int:
    """Append one entry in a transaction of its own. Returns the entry's id."""
    with storage.write() as conn:
        return append(conn, actor=actor, action=action, target=target, detail=detail, now_ms=now_ms)


def _entry(row: Any) -> Entry:
    try:
        detail = json.loads(row.detail)
    except ValueError:
        detail = {"unreadable": row.detail}
    return Entry(
        int(row.id),
        int(row.at),
        row.actor,
        row.action,
        row.target,
        detail if isinstance(detail, dict) else {"value": detail},
        row.prev_hash,
        row.hash,
    )


def entries(
    storage: Storage,
    *,
    after_id: int = 0,
    limit: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
) -> list[Entry]:
    """Entries in chain order, from ``after_id`` on, optionally filtered."""
    query = sa.select(audit_log).where(audit_log.c.id > after_id).order_by(audit_log.c.id)
    if actor:
        query = query.where(audit_log.c.actor == actor)
    if action:
        query = query.where(audit_log.c.action == action)
    if target:
        query = query.where(audit_log.c.target == target)
    if limit is not None:
        query = query.limit(limit)
    with storage.engine.connect() as conn:
        return [_entry(row) for row in conn.execute(query)]


def iter_entries(storage: Storage, batch: int = 5000) -> Iterator[Entry]:
    """Every entry in chain order, read in batches (an export of a long log holds one batch in memory)."""
    after = 0
    while True:
        page = entries(storage, after_id=after, limit=batch)
        yield from page
        if len(page) < batch:
            return
        after = page[-1].id


def verify(storage: Storage) -> tuple[int, Broken | None]:
    """Recompute the chain: (entries checked, the first broken entry or None)."""
    prev_hash = GENESIS
    expected_id: int | None = None
    checked = 0
    query = sa.select(audit_log).order_by(audit_log.c.id)
    with storage.engine.connect() as conn:
        for row in conn.execute(query).yield_per(5000):
            entry_id = int(row.id)
            if expected_id is not None and entry_id != expected_id:
                return checked, Broken(entry_id, f"entry {expected_id} is missing (deleted or renumbered)")
            if row.prev_hash != prev_hash:
                return checked, Broken(
                    entry_id, "does not follow the previous entry (an entry was removed or moved)"
                )
            content = canonical(
                entry_id, int(row.at), row.actor, row.action, target=row.target, detail=row.detail
            )
            if chain_hash(prev_hash, content) != row.hash:
                return checked, Broken(entry_id, "its content was changed after it was written")
            prev_hash = row.hash
            expected_id = entry_id + 1
            checked += 1
    return checked, None


def head(storage: Storage) -> tuple[int, str]:
    """The newest entry's id and hash ((0, GENESIS) for an empty log)."""
    with storage.engine.connect() as conn:
        row = conn.execute(
            sa.select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
        ).first()
    return (int(row.id), str(row.hash)) if row is not None else (0, GENESIS)
