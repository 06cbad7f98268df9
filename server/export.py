"""Event export: every stored event matching a filter, oldest first, in pages with a stable cursor
(``GET /v1/admin/events/export`` and ``mamori server export``; docs/server-api.md, "Export").

Order is (event time, uid): uids are unique, so the order is total and a keyset cursor (the key of the last row
sent) resumes exactly after it, never repeating or skipping a row that was there when the cursor was made,
however many events arrive meanwhile. The bodies are the records as stored, which passed the record contract
(``core.records.validate_record``: privacy allow-list and OCSF conformance) on ingest; nothing else of the
database (tokens, hostnames) is exported.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from core.errors import MamoriError
from server.storage import Storage, devices, events

FORMATS = ("ndjson", "csv")
MEDIA_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
PAGE = 1000
CSV_COLUMNS = (
    "time",
    "uid",
    "device",
    "sequence",
    "class_uid",
    "class_name",
    "type_uid",
    "activity_name",
    "severity_id",
    "severity",
    "event_code",
    "message",
    "control",
    "status",
    "unmapped",
)


class CursorError(MamoriError):
    """An export cursor that this server did not make."""


class Cursor(NamedTuple):
    """The key of the last exported event: (event time in epoch ms, uid)."""

    time: int
    uid: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.time}.{self.uid}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            time_text, uid = raw.split(".", 1)
            value = cls(int(time_text), uid)
        except (ValueError, binascii.Error, UnicodeDecodeError) as err:
            raise CursorError("cursor is not one this server returned; start again without it") from err
        if not (0 <= value.time < 2**63) or not 0 < len(uid) <= 36:
            raise CursorError("cursor is not one this server returned; start again without it")
        return value


@dataclass(frozen=True)
class ExportQuery:
    """Which events: the export API and command use the first five; the console's event list and its CSV also
    filter by group, posture check and minimum severity."""

    since_ms: int | None = None  # event time at or after
    until_ms: int | None = None  # event time before
    device: str | None = None
    class_uid: int | None = None
    after: Cursor | None = None
    group: str | None = None  # devices of this group
    check: str | None = None  # posture findings of this check
    severity: int | None = None  # at least


class ExportRow(NamedTuple):
    time: int
    uid: str
    device_id: str
    sequence: int
    body: str


def narrow(stmt: Any, query: ExportQuery) -> Any:
    """``stmt`` (a select over ``events``) limited to the events ``query`` names; no order, no cursor."""
    if query.group is not None:
        stmt = stmt.where(
            events.c.device_id.in_(sa.select(devices.c.id).where(devices.c.group_name == query.group))
        )
    if query.device is not None:
        stmt = stmt.where(events.c.device_id == query.device)
    if query.class_uid is not None:
        stmt = stmt.where(events.c.class_uid == query.class_uid)
    if query.severity is not None:
        stmt = stmt.where(events.c.severity_id >= query.severity)
    if query.since_ms is not None:
        stmt = stmt.where(events.c.time >= query.since_ms)
    if query.until_ms is not None:
        stmt = stmt.where(events.c.time < query.until_ms)
    if query.check is not None:
        # The check id sits in the stored record's unmapped data; the body is JSON as the agent sent it
        # (with or without a space after the colon).
        quoted = json.dumps(query.check).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(
            events.c.event_code == "posture.finding",
            sa.or_(
                events.c.body.like(f'%"check_id":{quoted}%', escape="\\"),
                events.c.body.like(f'%"check_id": {quoted}%', escape="\\"),
            ),
        )
    return stmt


def _select(query: ExportQuery, after: Cursor | None) -> Any:
    if after is not None and (query.since_ms is None or query.since_ms < after.time):
        # The cursor's time as the window's lower bound (what the OR below implies), so that the index on time
        # starts at the cursor: with the OR alone, PostgreSQL and SQLite scan the window from its start and
        # filter, and each page read every row exported before it (a 100 000-event export read 5 million rows;
        # benchmarks/scale_bench.py). One bound, not two: SQLite ranges its index on one of them only.
        query = replace(query, since_ms=after.time)
    stmt = narrow(
        sa.select(events.c.time, events.c.uid, events.c.device_id, events.c.sequence, events.c.body), query
    )
    if after is not None:
        stmt = stmt.where(
            sa.or_(events.c.time > after.time, sa.and_(events.c.time == after.time, events.c.uid > after.uid))
        )
    return stmt.order_by(events.c.time, events.c.uid)


def page_end(storage: Storage, query: ExportQuery, limit: int) -> Cursor | None:
    """The cursor after the first ``limit`` events, or None when no event follows them (the last page)."""
    stmt = (
        _select(query, query.after).with_only_columns(events.c.time, events.c.uid).offset(limit - 1).limit(2)
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return Cursor(int(rows[0].time), str(rows[0].uid)) if len(rows) == 2 else None


def iter_events(
    storage: Storage, query: ExportQuery, *, end: Cursor | None = None, page: int = PAGE
) -> Iterator[ExportRow]:
    """Every matching event after ``query.after`` up to and including ``end`` (None: to the last), in pages of
    ``page`` rows, each page its own short read (no transaction is held open while the client reads)."""
    after = query.after
    while True:
        stmt = _select(query, after)
        if end is not None:
            stmt = stmt.where(
                sa.or_(events.c.time < end.time, sa.and_(events.c.time == end.time, events.c.uid <= end.uid))
            )
        with storage.engine.connect() as conn:
            rows = [
                ExportRow(int(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]))
                for r in conn.execute(stmt.limit(page))
            ]
        yield from rows
        if len(rows) < page:
            return
        after = Cursor(rows[-1].time, rows[-1].uid)


def _iso(ms_value: int) -> str:
    return (
        datetime.fromtimestamp(ms_value / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def csv_row(row: ExportRow) -> list[Any]:
    record = json.loads(row.body)
    compliance = record.get("compliance") or {}
    return [
        _iso(row.time),
        row.uid,
        row.device_id,
        row.sequence,
        record.get("class_uid"),
        record.get("class_name"),
        record.get("type_uid"),
        record.get("activity_name"),
        record.get("severity_id"),
        record.get("severity"),
        record.get("metadata", {}).get("event_code"),
        record.get("message"),
        compliance.get("control", ""),
        compliance.get("status", ""),
        json.dumps(record.get("unmapped", {}), ensure_ascii=False, sort_keys=True),
    ]


def encode(rows: Iterator[ExportRow], fmt: str) -> Iterator[bytes]:
    """NDJSON (the stored record, one a line) or CSV (a header, then one flat row an event), in chunks."""
    if fmt == "ndjson":
        chunk: list[str] = []
        for row in rows:
            chunk.append(row.body)
            if len(chunk) >= PAGE:
                yield ("\n".join(chunk) + "\n").encode("utf-8")
                chunk = []
        if chunk:
            yield ("\n".join(chunk) + "\n").encode("utf-8")
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends
    writer.writerow(CSV_COLUMNS)
    for n, row in enumerate(rows, 1):
        writer.writerow(csv_row(row))
        if n % PAGE == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "MEDIA_TYPES",
    "Cursor",
    "CursorError",
    "ExportQuery",
    "ExportRow",
    "encode",
    "iter_events",
    "page_end",
]
