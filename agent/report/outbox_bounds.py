"""The outbox's bounds and its drop accounting (used by agent/report/outbox.py).

Bounds (policy ``[reporting] outbox_max_events`` / ``outbox_max_bytes``): when full, pending heartbeats are
coalesced to the newest one first, then the lowest-priority events are dropped oldest first, so security
findings go last (``events.Priority``). Drops are counted in the ``drops`` table, the range of dropped
sequences in ``meta`` (``gap_first``, ``gap_last``), until the outbox turns them into one ``report.gap`` event.
Events handed to the uploader ("in flight") are never dropped: the server may already hold them.

Everything here runs inside the outbox's transaction and under its lock.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MIN_EVENTS = 10
MIN_BYTES = 4096


@dataclass(frozen=True)
class Gap:
    """Drops not yet reported: counts per event kind and the range of sequences they had."""

    dropped: dict[str, int]
    coalesced: dict[str, int]
    first: int | None
    last: int | None


def read_meta(db: sqlite3.Connection, key: str, default: int) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else default


def write_meta(db: sqlite3.Connection, key: str, value: int) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


class OutboxBounds:
    """How much the outbox holds against its bounds, what it drops to stay inside them, and what it dropped."""

    def __init__(self, db: sqlite3.Connection, max_events: int, max_bytes: int) -> None:
        self._db = db
        self.max_events = max(MIN_EVENTS, max_events)
        self.max_bytes = max(MIN_BYTES, max_bytes)
        self.count = 0  # events stored
        self.size = 0  # bytes of their bodies
        self.drops_pending = False  # drops not yet turned into a gap event
        self.recount()

    def set(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max(MIN_EVENTS, max_events)
        self.max_bytes = max(MIN_BYTES, max_bytes)

    def recount(self) -> None:
        """Read the totals from the database (on open, and after a rollback moved them)."""
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
        self.count, self.size = int(row[0]), int(row[1])
        self.drops_pending = self._db.execute("SELECT 1 FROM drops LIMIT 1").fetchone() is not None

    def added(self, size: int) -> None:
        self.count += 1
        self.size += size

    def removed(self, size: int) -> None:
        self.count -= 1
        self.size -= size

    def enforce(self, inflight: Collection[int]) -> None:
        """Drop events until the outbox is inside its bounds again, never one of ``inflight``."""
        if not self._over():
            return
        # 1. Coalesce heartbeats: the newest one says everything the older ones did.
        rows = self._db.execute(
            "SELECT seq, kind, class_uid, size FROM events WHERE kind = 'heartbeat' ORDER BY seq DESC"
        ).fetchall()
        victims = [r for r in rows[1:] if r[0] not in inflight]
        self._remove(victims, coalesced=True)
        # 2. Drop lowest priority first, oldest first; never what is in flight.
        while self._over():
            excess = max(self.count - self.max_events, 1)
            if self.size > self.max_bytes:
                excess = max(excess, 16)
            rows = self._db.execute(
                "SELECT seq, kind, class_uid, size, body FROM events ORDER BY priority, seq LIMIT ?",
                (excess + len(inflight),),
            ).fetchall()
            victims = [r for r in rows if r[0] not in inflight][:excess]
            if not victims:
                logger.warning("outbox over its bound but every event is in flight")
                return
            if self.size > self.max_bytes and self.count <= self.max_events:
                # Byte bound: drop just enough, in drop order.
                need, chosen = self.size - self.max_bytes, []
                for r in victims:
                    chosen.append(r)
                    need -= r[3]
                    if need <= 0:
                        break
                victims = chosen
            self._remove(victims, coalesced=False)

    def pending_gap(self) -> Gap | None:
        """The drops a ``report.gap`` event is due for; None when nothing was dropped."""
        rows = self._db.execute("SELECT kind, class_uid, dropped, coalesced FROM drops").fetchall()
        if not rows:
            return None
        return Gap(
            dropped={k: d for k, _c, d, _co in rows if d},
            coalesced={k: co for k, _c, _d, co in rows if co},
            first=read_meta(self._db, "gap_first", 0) or None,
            last=read_meta(self._db, "gap_last", 0) or None,
        )

    def clear_gap(self) -> None:
        """The gap event now carries the counts: forget them (in the transaction that stores that event)."""
        self._db.execute("DELETE FROM drops")
        self._db.execute("DELETE FROM meta WHERE key IN ('gap_first', 'gap_last')")
        self.drops_pending = False

    def _over(self) -> bool:
        return self.count > self.max_events or self.size > self.max_bytes

    def _remove(self, victims: Sequence[Sequence[Any]], *, coalesced: bool) -> None:
        for victim in victims:
            seq, kind, class_uid, size = victim[0], victim[1], victim[2], victim[3]
            self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
            self.removed(size)
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
        self.drops_pending = True
        self._db.execute(
            "INSERT INTO drops (kind, class_uid, dropped, coalesced) VALUES (?,?,?,?) "
            "ON CONFLICT (kind) DO UPDATE SET dropped = dropped + excluded.dropped, "
            "coalesced = coalesced + excluded.coalesced",
            (kind, class_uid, dropped, coalesced),
        )

    def _note_seq(self, seq: Any) -> None:
        if not isinstance(seq, int):
            return
        first = read_meta(self._db, "gap_first", 0)
        if first == 0 or seq < first:
            write_meta(self._db, "gap_first", seq)
        if seq > read_meta(self._db, "gap_last", 0):
            write_meta(self._db, "gap_last", seq)
