"""The durable outbox: every event stays on disk until the server has acknowledged it (SPEC.md, Events).

SQLite in WAL mode with ``synchronous=FULL``: a ``put`` that returned survives a power cut, not just a crash.
Each stored event gets the next ``metadata.sequence`` in the same transaction that stores it, so sequences have
no gaps unless the outbox itself drops events — and then a gap event says how many of each kind were dropped.

Bounds (policy ``[reporting] outbox_max_events`` / ``outbox_max_bytes``, agent/report/outbox_bounds.py): when
full, pending heartbeats are coalesced to the newest one first, then the lowest-priority events are dropped
oldest first, so security findings go last (``events.Priority``). Drops are counted in the ``drops`` table and
turned into one ``report.gap`` event the next time a batch is taken. Events handed to the uploader ("in flight")
are never dropped: the server may already hold them.

One process owns the outbox; its methods are thread-safe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.report.events import Priority, gap_record, record_priority
from agent.report.outbox_bounds import MIN_BYTES, MIN_EVENTS, OutboxBounds, read_meta, write_meta
from core.errors import MamoriError

__all__ = [
    "KEEP_REJECTED",
    "MIN_BYTES",
    "MIN_EVENTS",
    "Outbox",
    "OutboxError",
    "Pending",
    "Rejected",
    "encode",
]

logger = logging.getLogger(__name__)

KEEP_REJECTED = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    uid TEXT NOT NULL,
    kind TEXT NOT NULL,
    class_uid INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_drop_order ON events (priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS drops (
    kind TEXT PRIMARY KEY,
    class_uid INTEGER NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0,
    coalesced INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    uid TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    body BLOB NOT NULL
);
"""


class OutboxError(MamoriError):
    """The outbox database cannot be opened or written."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(
            f"{path}: outbox {reason}; check free disk space and permissions of the state directory"
        )


@dataclass(frozen=True)
class Pending:
    seq: int
    uid: str
    kind: str
    body: bytes  # canonical JSON of the record, without ``device`` (stamped at send time)


@dataclass(frozen=True)
class Rejected:
    seq: int
    uid: str
    kind: str
    reason: str


def encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


class Outbox:
    def __init__(
        self,
        path: Path,
        *,
        max_events: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._inflight: set[int] = set()
        self._now = now
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed put survives power loss in WAL mode too (NORMAL would only survive a crash).
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            if os.name == "posix":
                os.chmod(path, 0o600)
            self._bounds = OutboxBounds(self._db, max_events, max_bytes)  # reads the totals
        except sqlite3.Error as err:
            raise OutboxError(path, f"cannot be opened ({err})") from err

    @property
    def max_events(self) -> int:
        return self._bounds.max_events

    @property
    def max_bytes(self) -> int:
        return self._bounds.max_bytes

    # --- writing ---------------------------------------------------------------------------------------------

    def set_bounds(self, max_events: int, max_bytes: int) -> None:
        with self._lock:
            self._bounds.set(max_events, max_bytes)

    def put(self, records: Sequence[dict[str, Any]]) -> list[int]:
        """Store records (assigning ``metadata.sequence`` in place); durable when this returns."""
        if not records:
            return []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seqs = self._insert(records)
                self._bounds.enforce(self._inflight)
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise OutboxError(self.path, f"write failed ({err})") from err
            return seqs

    def _insert(self, records: Sequence[dict[str, Any]]) -> list[int]:
        next_seq = read_meta(self._db, "next_sequence", 1)
        seqs: list[int] = []
        for record in records:
            record["metadata"]["sequence"] = next_seq
            body = encode(record)
            self._db.execute(
                "INSERT INTO events (seq, uid, kind, class_uid, priority, size, body) VALUES (?,?,?,?,?,?,?)",
                (
                    next_seq,
                    record["metadata"]["uid"],
                    record["metadata"]["event_code"],
                    record["class_uid"],
                    int(record_priority(record)),
                    len(body),
                    body,
                ),
            )
            self._bounds.added(len(body))
            seqs.append(next_seq)
            next_seq += 1
        write_meta(self._db, "next_sequence", next_seq)
        return seqs

    # --- reading for upload ------------------------------------------------------------------------------------

    def next_batch(self, max_count: int = 500, max_bytes: int = 1024 * 1024) -> list[Pending]:
        """The oldest pending events not already in flight; marks them in flight. A pending gap count is first
        turned into a ``report.gap`` event so the server learns about the drop."""
        with self._lock:
            self._materialize_gap()
            excluded = tuple(self._inflight)
            rows = self._db.execute(
                "SELECT seq, uid, kind, body FROM events ORDER BY seq LIMIT ?",
                (max_count + len(excluded),),
            ).fetchall()
            batch: list[Pending] = []
            size = 0
            for seq, uid, kind, body in rows:
                if seq in self._inflight:
                    continue
                if batch and (len(batch) >= max_count or size + len(body) > max_bytes):
                    break
                batch.append(Pending(seq, uid, kind, bytes(body)))
                size += len(body)
            self._inflight.update(p.seq for p in batch)
            return batch

    def _materialize_gap(self) -> None:
        gap = self._bounds.pending_gap()
        if gap is None or self._now is None:
            return
        record = gap_record(gap.dropped, gap.coalesced, gap.first, gap.last, self._now())
        try:
            # One transaction: the counts move from the drops table into the gap event, never lost or doubled.
            self._db.execute("BEGIN IMMEDIATE")
            self._bounds.clear_gap()
            self._insert([record])
            self._bounds.enforce(self._inflight)
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise OutboxError(self.path, f"write failed ({err})") from err
        logger.warning("outbox dropped events: %s, coalesced: %s", gap.dropped, gap.coalesced)

    def ack(self, seqs: Sequence[int]) -> None:
        """The server committed these events (accepted or duplicate): delete them."""
        self._delete(seqs)

    def release(self, seqs: Sequence[int]) -> None:
        """An upload failed: these events are no longer in flight and will be sent again."""
        with self._lock:
            self._inflight.difference_update(seqs)

    def set_aside(self, items: Sequence[tuple[int, str]]) -> None:
        """The server rejected these events (seq, reason): keep them apart for diagnosis, never resend."""
        if not items:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for seq, reason in items:
                    row = self._db.execute(
                        "SELECT uid, kind, size, body FROM events WHERE seq = ?", (seq,)
                    ).fetchone()
                    if row is None:
                        continue
                    self._db.execute(
                        "INSERT OR REPLACE INTO rejected (seq, uid, kind, reason, body) VALUES (?,?,?,?,?)",
                        (seq, row[0], row[1], reason[:500], row[3]),
                    )
                    self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
                    self._bounds.removed(int(row[2]))
                self._db.execute(
                    "DELETE FROM rejected WHERE seq NOT IN (SELECT seq FROM rejected ORDER BY seq DESC LIMIT ?)",
                    (KEEP_REJECTED,),
                )
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise OutboxError(self.path, f"write failed ({err})") from err
            finally:
                self._inflight.difference_update(seq for seq, _ in items)

    def _delete(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for seq in seqs:
                    row = self._db.execute(
                        "DELETE FROM events WHERE seq = ? RETURNING size", (seq,)
                    ).fetchone()
                    if row is not None:
                        self._bounds.removed(int(row[0]))
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise OutboxError(self.path, f"write failed ({err})") from err
            finally:
                self._inflight.difference_update(seqs)

    # --- inspection ------------------------------------------------------------------------------------------

    def pending_count(self) -> int:
        with self._lock:
            return self._bounds.count

    def has_work(self) -> bool:
        """Events to send, or drops not yet turned into a gap event."""
        with self._lock:
            return self._bounds.count > 0 or self._bounds.drops_pending

    def pending_bytes(self) -> int:
        with self._lock:
            return self._bounds.size

    def last_sequence(self) -> int:
        """The highest sequence ever assigned (0 when none)."""
        with self._lock:
            return read_meta(self._db, "next_sequence", 1) - 1

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM events ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    def pending_drops(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            rows = self._db.execute("SELECT kind, dropped, coalesced FROM drops").fetchall()
        return {k: (int(d), int(c)) for k, d, c in rows}

    def rejected(self) -> list[Rejected]:
        with self._lock:
            rows = self._db.execute("SELECT seq, uid, kind, reason FROM rejected ORDER BY seq").fetchall()
        return [Rejected(int(s), u, k, r) for s, u, k, r in rows]

    def priorities(self) -> dict[int, int]:
        with self._lock:
            rows = self._db.execute("SELECT priority, COUNT(*) FROM events GROUP BY priority").fetchall()
        return {int(Priority(p)): int(n) for p, n in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- helpers ---------------------------------------------------------------------------------------------

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        # Recount: the in-memory totals may have moved with the rolled-back statements.
        self._bounds.recount()
