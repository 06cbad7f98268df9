"""Event ingest: NDJSON batch parsing against the record contract (core.records), gzip with a size limit, and
the thread-pool half of ``POST /v1/events`` (parse, rate-limit, store)."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import HTTPException, Response

from core.records import validate_record
from server.console.state import DERIVING
from server.context import ServerContext
from server.overload import retry_later
from server.storage import Device, EventRow

logger = logging.getLogger(__name__)


@dataclass
class ParsedBatch:
    rows: list[EventRow]
    rejected: list[dict[str, Any]]
    foreign_device: bool
    # uid -> the event's data, for the kinds the console derives device state from (server/console/state.py)
    facts: dict[str, Any] = field(default_factory=dict)


def parse_batch(raw: bytes, device_id: str, max_event_bytes: int) -> ParsedBatch:
    """NDJSON -> validated rows; each bad line is rejected alone (index = position among non-empty lines).

    Lines are decoded with orjson (strict RFC 8259 UTF-8: no NaN/Infinity, no lone surrogates, integers within
    64 bits, all of which ``validate_record`` would refuse anyway) and stored as received, never re-serialised.
    """
    rows: list[EventRow] = []
    rejected: list[dict[str, Any]] = []
    foreign = False
    facts: dict[str, Any] = {}
    loads = orjson.loads
    index = -1
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        index += 1
        if len(line) > max_event_bytes:
            rejected.append(
                {"index": index, "uid": None, "reason": f"(top): event larger than {max_event_bytes} bytes"}
            )
            continue
        try:
            record = loads(line)
        except orjson.JSONDecodeError:
            rejected.append({"index": index, "uid": None, "reason": "(top): not a JSON object"})
            continue
        problems = validate_record(record)
        if problems:
            uid = None
            if type(record) is dict:
                meta = record.get("metadata")
                if type(meta) is dict and type(meta.get("uid")) is str:
                    uid = meta["uid"][:64]
            rejected.append({"index": index, "uid": uid, "reason": "; ".join(problems[:3])[:500]})
            device = record.get("device") if type(record) is dict else None
            if type(device) is dict and type(device.get("uid")) is str and device["uid"] != device_id:
                foreign = True
            continue
        meta = record["metadata"]
        if meta["event_code"] in DERIVING:
            facts[meta["uid"]] = record.get("unmapped") or {}
        if record["device"]["uid"] != device_id:  # validated: device.uid is a string
            foreign = True
        rows.append(
            EventRow(  # uid, sequence, class_uid, type_uid, severity_id, event_code, time, body
                meta["uid"],
                meta["sequence"],
                record["class_uid"],
                record["type_uid"],
                record["severity_id"],
                meta["event_code"],
                record["time"],
                line.decode("utf-8"),  # validated JSON, stored as sent
            )
        )
    return ParsedBatch(rows, rejected, foreign, facts)


def decompress(raw: bytes, limit: int) -> bytes:
    """One gzip member, at most ``limit`` bytes once decompressed (a gzip bomb stops at ``limit`` + 1)."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decoder.decompress(raw, limit + 1)
    except zlib.error as err:
        raise HTTPException(400, "body is not valid gzip") from err
    if len(out) > limit:
        raise HTTPException(413, f"decompressed body larger than {limit} bytes")
    if not decoder.eof or decoder.unused_data:
        raise HTTPException(400, "body is truncated or has several gzip members")
    return out


def ingest_batch(context: ServerContext, raw: bytes, gzipped: bool, device: Device) -> Response:
    """Decompress, parse and validate, store; the 200 is built only after ``storage.ingest`` committed."""
    settings = context.settings
    if gzipped:
        raw = decompress(raw, settings.max_decompressed_bytes)
    parsed = parse_batch(raw, device.id, settings.max_event_bytes)
    total = len(parsed.rows) + len(parsed.rejected)
    if total > settings.max_batch_events:
        raise HTTPException(
            413, f"batch larger than {settings.max_batch_events} events; send smaller batches"
        )
    if parsed.foreign_device:
        raise HTTPException(403, "the batch holds events of another device")
    if context.forwarding is not None and context.forwarding.over_bound():
        # Back-pressure instead of loss: the agents keep the events until the forwarders catch up.
        return retry_later(503, 30, "forwarders are behind; retry later")
    wait = context.overload.take(device.id, total)
    if wait > 0:
        return retry_later(429, wait, "device over its event rate; retry later")
    try:
        # the after-insert hooks (derived state, alert rules) run in the ingest transaction
        accepted, duplicate = context.storage.ingest(device.id, parsed.rows, context.now_ms(), parsed.facts)
    except Exception as err:
        import sqlalchemy as sa

        if isinstance(err, sa.exc.SQLAlchemyError):
            logger.warning("ingest failed: %s", type(err).__name__)
            return retry_later(503, 5, "database unavailable; retry later")
        raise
    body = {"accepted": accepted, "duplicate": duplicate, "rejected": parsed.rejected}
    return Response(orjson.dumps(body), media_type="application/json")
