"""The durable outbox: every event stays on disk until the server has acknowledged it (SPEC.md, Events).

SQLite in WAL mode with ``synchronous=FULL``: a ``put`` that returned survives a power cut, not just a crash.
Each stored event gets the next ``metadata.sequence`` in the same transaction that stores it, so sequences have
no gaps unless the outbox itself drops events — and then a gap event says how many of each kind were dropped.

Bounds (policy ``[reporting] outbox_max_events`` / ``outbox_max_bytes``): when full, pending heartbeats are
coalesced to the newest one first, then the lowest-priority events are dropped oldest first, so security
findings go last (``events.Priority``). Drops are counted in the ``drops`` table and turned into one
``report.gap`` event the next time a batch is taken. Events handed to the uploader ("in flight") are never
dropped: the server may already hold them.

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
from core.errors import MamoriError

logger = logging.getLogger(__name__)

MIN_EVENTS = 10
MIN_BYTES = 4096
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
        self.max_events = max(MIN_EVENTS, max_events)
        self.max_bytes = max(MIN_BYTES, max_bytes)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed put survives power loss in WAL mode too (NORMAL would only survive a crash).
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            if os.name == "posix":
                os.chmod(path, 0o600)
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
        except sqlite3.Error as err:
            raise OutboxError(path, f"cannot be opened ({err})") from err
        self._count, self._bytes = int(row[0]), int(row[1])
        self._drops_pending = self._db.execute("SELECT 1 FROM drops LIMIT 1").fetchone() is not None

    # --- writing ---------------------------------------------------------------------------------------------

    def set_bounds(self, max_events: int, max_bytes: int) -> None:
        with self._lock:
            self.max_events = max(MIN_EVENTS, max_events)
            self.max_bytes = max(MIN_BYTES, max_bytes)

    def put(self, records: Sequence[dict[str, Any]]) -> list[int]:
        """Store records (assigning ``metadata.sequence`` in place); durable when this returns."""
        if not records:
            return []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                seqs = self._insert(records)
                self._enforce_bounds()
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise OutboxError(self.path, f"write failed ({err})") from err
            return seqs

    def _insert(self, records: Sequence[dict[str, Any]]) -> list[int]:
        next_seq = self._meta("next_sequence", 1)
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
            self._count += 1
            self._bytes += len(body)
            seqs.append(next_seq)
            next_seq += 1
        self._set_meta("next_sequence", next_seq)
        return seqs

    def _enforce_bounds(self) -> None:
        if not self._over():
            return
        # 1. Coalesce heartbeats: the newest one says everything the older ones did.
        rows = self._db.execute(
            "SELECT seq, kind, class_uid, size FROM events WHERE kind = 'heartbeat' ORDER BY seq DESC"
        ).fetchall()
        victims = [r for r in rows[1:] if r[0] not in self._inflight]
        self._remove(victims, coalesced=True)
        # 2. Drop lowest priority first, oldest first; never what is in flight.
        while self._over():
            excess = max(self._count - self.max_events, 1)
            if self._bytes > self.max_bytes:
                excess = max(excess, 16)
            rows = self._db.execute(
                "SELECT seq, kind, class_uid, size, body FROM events ORDER BY priority, seq LIMIT ?",
                (excess + len(self._inflight),),
            ).fetchall()
            victims = [r for r in rows if r[0] not in self._inflight][:excess]
            if not victims:
                logger.warning("outbox over its bound but every event is in flight")
                return
            if self._bytes > self.max_bytes and self._count <= self.max_events:
                # Byte bound: drop just enough, in drop order.
                need, chosen = self._bytes - self.max_bytes, []
                for r in victims:
                    chosen.append(r)
                    need -= r[3]
                    if need <= 0:
                        break
                victims = chosen
            self._remove(victims, coalesced=False)

    def _over(self) -> bool:
        return self._count > self.max_events or self._bytes > self.max_bytes

    def _remove(self, victims: Sequence[Sequence[Any]], *, coalesced: bool) -> None:
        for victim in victims:
            seq, kind, class_uid, size = victim[0], victim[1], victim[2], victim[3]
            self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
            self._count -= 1
            self._bytes -= size
            if kind == "report.gap" and len(victim) > 4:
                # Dropping a gap event folds its counts back in, so the next one still counts everything.
                data = json.loads(victim[4]).get("unmapped", {})
                for k, n in data.get("dropped", {}).items():
                    self._add_drop(k, 0, n, 0)
                for k, n in data.get("coalesced", {}).items():
                    self._add_drop(k, 0, 0, n)
                self._note_seq(data.get("first_sequence"))
                self._note_seq(data.get("last_sequence"))
                self._add_drop(kind, class_uid, 1, 0)
            else:
                self._add_drop(kind, class_uid, 0 if coalesced else 1, 1 if coalesced else 0)
            self._note_seq(seq)

    def _add_drop(self, kind: str, class_uid: int, dropped: int, coalesced: int) -> None:
        self._drops_pending = True
        self._db.execute(
            "INSERT INTO drops (kind, class_uid, dropped, coalesced) VALUES (?,?,?,?) "
            "ON CONFLICT (kind) DO UPDATE SET dropped = dropped + excluded.dropped, "
            "coalesced = coalesced + excluded.coalesced",
            (kind, class_uid, dropped, coalesced),
        )

    def _note_seq(self, seq: Any) -> None:
        if not isinstance(seq, int):
            return
        first = self._meta("gap_first", 0)
        if first == 0 or seq < first:
            self._set_meta("gap_first", seq)
        if seq > self._meta("gap_last", 0):
            self._set_meta("gap_last", seq)

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
        rows = self._db.execute("SELECT kind, class_uid, dropped, coalesced FROM drops").fetchall()
        if not rows or self._now is None:
            return
        dropped = {k: d for k, _c, d, _co in rows if d}
        coalesced = {k: co for k, _c, _d, co in rows if co}
        first, last = self._meta("gap_first", 0) or None, self._meta("gap_last", 0) or None
        record = gap_record(dropped, coalesced, first, last, self._now())
        try:
            # One transaction: the counts move from the drops table into the gap event, never lost or doubled.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM drops")
            self._db.execute("DELETE FROM meta WHERE key IN ('gap_first', 'gap_last')")
            self._drops_pending = False
            self._insert([record])
            self._enforce_bounds()
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            self._rollback()
            raise OutboxError(self.path, f"write failed ({err})") from err
        logger.warning("outbox dropped events: %s, coalesced: %s", dropped, coalesced)

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
                    self._count -= 1
                    self._bytes -= int(row[2])
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
                        self._count -= 1
                        self._bytes -= int(row[0])
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                self._rollback()
                raise OutboxError(self.path, f"write failed ({err})") from err
            finally:
                self._inflight.difference_update(seqs)

    # --- inspection ------------------------------------------------------------------------------------------

    def pending_count(self) -> int:
        with self._lock:
            return self._count

    def has_work(self) -> bool:
        """Events to send, or drops not yet turned into a gap event."""
        with self._lock:
            return self._count > 0 or self._drops_pending

    def pending_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def last_sequence(self) -> int:
        """The highest sequence ever assigned (0 when none)."""
        with self._lock:
            return self._meta("next_sequence", 1) - 1

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

    def _meta(self, key: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")
        # Recount: the in-memory totals may have moved with the rolled-back statements.
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        self._drops_pending = self._db.execute("SELECT 1 FROM drops LIMIT 1").fetchone() is not None
