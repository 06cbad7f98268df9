"""Retention: per-table age limits from server.toml ``[retention]``, deleted in batches (docs/server-api.md,
"Retention").

```toml
[retention]
events_days = 400          # events older than this (by the agent's time AND by the server's receipt)
gaps_days = 400            # recorded sequence gaps
dead_letters_days = 90     # forwarder outbox rows that exhausted their retries
batch = 5000               # rows per delete transaction
interval_s = 3600          # how often the server process runs it (0: only `mamori server retention`)
```

Every limit is off (0) unless set: nothing is deleted by default. An event that a forwarder has not delivered yet
(still in ``forward_pending`` or ``forward_outbox``, a dead letter included) is never deleted: it leaves only once
its outbox row is gone (delivered, or its dead letter aged out by ``dead_letters_days``). The admin audit log is
not subject to retention: deleting from a hash chain would break it. Each run that deletes something is
recorded in the audit log (actor ``retention``).

Deletes go in batches of ``batch`` rows, each its own short transaction, so ingest (SQLite's single writer, or
PostgreSQL row locks) waits at most one batch. On PostgreSQL the events are not partitioned: a batch is a
``DELETE … WHERE uid IN (SELECT … LIMIT n)``, not a dropped partition.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import sqlalchemy as sa

from core.clock import Clock
from core.errors import MamoriError
from server.forward_store import forward_outbox, forward_pending
from server.storage import Storage, events, gaps, ms

logger = logging.getLogger(__name__)
DAY_MS = 86_400_000


class RetentionConfigError(MamoriError):
    """``[retention]`` in server.toml is invalid."""


@dataclass(frozen=True)
class RetentionSettings:
    events_days: int = 0
    gaps_days: int = 0
    dead_letters_days: int = 0
    batch: int = 5000
    interval_s: int = 3600

    @property
    def enabled(self) -> bool:
        return any((self.events_days, self.gaps_days, self.dead_letters_days))


def parse_retention(raw: Any, source: str) -> RetentionSettings:
    if not isinstance(raw, Mapping):
        raise RetentionConfigError(
            f"{source}: [retention] must be a table, e.g. [retention] events_days = 400"
        )
    known = {f.name for f in fields(RetentionSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise RetentionConfigError(
            f"{source}: [retention] unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    values: dict[str, int] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RetentionConfigError(
                f"{source}: [retention] {key} must be a whole number ≥ 0, not {value!r}"
            )
        values[key] = value
    settings = RetentionSettings(**values)
    if settings.batch < 1:
        raise RetentionConfigError(f"{source}: [retention] batch must be at least 1")
    return settings


@dataclass(frozen=True)
class RetentionResult:
    events: int = 0
    gaps: int = 0
    dead_letters: int = 0
    kept_undelivered: int = 0  # events past their age kept because a forwarder has not delivered them

    def deleted(self) -> int:
        return self.events + self.gaps + self.dead_letters


def _undelivered() -> sa.ColumnElement[bool]:
    pending = sa.select(forward_pending.c.uid).where(forward_pending.c.uid == events.c.uid).exists()
    queued = sa.select(forward_outbox.c.uid).where(forward_outbox.c.uid == events.c.uid).exists()
    return sa.or_(pending, queued)


def _batched(
    storage: Storage, table: sa.Table, key: sa.Column[Any], where: sa.ColumnElement[bool], batch: int
) -> int:
    total = 0
    while True:
        with storage.write() as conn:
            chosen = sa.select(key).where(where).limit(batch).scalar_subquery()
            deleted = conn.execute(table.delete().where(key.in_(chosen))).rowcount
        total += deleted
        if deleted < batch:
            return total


def apply_retention(storage: Storage, settings: RetentionSettings, now_ms: int) -> RetentionResult:
    """Delete what is past its age limit, in batches; return the counts."""
    dead = gaps_deleted = deleted_events = kept = 0
    if settings.dead_letters_days:
        cutoff = now_ms - settings.dead_letters_days * DAY_MS
        # a dead letter's next_at is when it was given up on (the last attempt)
        old_dead = sa.and_(forward_outbox.c.dead == sa.true(), forward_outbox.c.next_at < cutoff)
        with storage.write() as conn:
            dead = conn.execute(forward_outbox.delete().where(old_dead)).rowcount
    if settings.gaps_days:
        cutoff = now_ms - settings.gaps_days * DAY_MS
        gaps_deleted = _batched(storage, gaps, gaps.c.id, gaps.c.detected_at < cutoff, settings.batch)
    if settings.events_days:
        cutoff = now_ms - settings.events_days * DAY_MS
        old = sa.and_(events.c.time < cutoff, events.c.received_at < cutoff)
        deleted_events = _batched(
            storage, events, events.c.uid, sa.and_(old, ~_undelivered()), settings.batch
        )
        with storage.engine.connect() as conn:
            kept = int(conn.execute(sa.select(sa.func.count()).select_from(events).where(old)).scalar_one())
    result = RetentionResult(deleted_events, gaps_deleted, dead, kept)
    if result.deleted():
        from server.audit import record

        record(
            storage,
            actor="retention",
            action="retention.delete",
            detail={
                "events": deleted_events,
                "gaps": gaps_deleted,
                "dead_letters": dead,
                "kept_undelivered": kept,
            },
            now_ms=now_ms,
        )
        logger.info(
            "retention: deleted %d events, %d gaps, %d dead letters; kept %d undelivered events past their age",
            deleted_events,
            gaps_deleted,
            dead,
            kept,
        )
    return result


class RetentionService:
    """Runs :func:`apply_retention` every ``interval_s`` in the server process (a daemon thread)."""

    def __init__(self, storage: Storage, settings: RetentionSettings, clock: Clock) -> None:
        self._storage = storage
        self._settings = settings
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._settings.enabled or self._settings.interval_s <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mamori-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                apply_retention(self._storage, self._settings, ms(self._clock.now()))
            except sa.exc.SQLAlchemyError:
                logger.exception(
                    "retention: this run failed; the next one is in %d s", self._settings.interval_s
                )
            self._stop.wait(self._settings.interval_s)
