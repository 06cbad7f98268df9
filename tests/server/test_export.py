"""Event export (GET /v1/admin/events/export and `mamori server export`): oldest first, filters, CSV, and a
stable cursor that pages through 100 000 events exactly once while new events keep arriving."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.report.events import build_record, rule_context, stamp_device
from agent.report.stream import AgentEvent, Kind
from server.export import CSV_COLUMNS, Cursor
from server.storage import EventRow, Storage
from tests.harness.live_server import admin_token

BASE_MS = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)


def template(kind: Kind = Kind.POSTURE_FINDING) -> dict[str, Any]:
    data = {"check_id": "vpn", "status": "fail", "mode": "block", "enforcement": "block"}
    record = build_record(
        AgentEvent(
            kind, datetime.fromtimestamp(BASE_MS / 1000, UTC), data if kind == Kind.POSTURE_FINDING else {}
        ),
        rule_context(),
    )
    record["metadata"]["sequence"] = 1
    return stamp_device(record, "dev-0")


def rows(
    device: str, first_seq: int, n: int, *, time_of: Any, kind: Kind = Kind.POSTURE_FINDING
) -> list[EventRow]:
    """``n`` stored events of ``device``; event times from ``time_of(seq)`` (several share one millisecond)."""
    base = template(kind)
    tag = zlib.crc32(device.encode()) & 0xFFF
    out = []
    for seq in range(first_seq, first_seq + n):
        when = time_of(seq)
        uid = f"{when:012x}"[:8] + "-" + f"{when:012x}"[8:12] + f"-7{tag:03x}-8000-{seq:012d}"
        base["metadata"]["uid"] = uid
        base["metadata"]["sequence"] = seq
        base["time"] = when
        base["device"]["uid"] = device
        out.append(
            EventRow(
                uid,
                seq,
                base["class_uid"],
                base["type_uid"],
                base["severity_id"],
                base["metadata"]["event_code"],
                when,
                json.dumps(base),
            )
        )
    return out


def fill(storage: Storage, device: str, total: int, *, time_of: Any, batch: int = 20_000) -> None:
    """Stored events straight into the table (test setup; ingest itself is tested elsewhere)."""
    from server.storage import events

    storage_devices(storage, device)
    for start in range(1, total + 1, batch):
        chunk = rows(device, start, min(batch, total - start + 1), time_of=time_of)
        with storage.write() as conn:
            conn.execute(
                events.insert(),
                [{**r._asdict(), "device_id": device, "received_at": 0} for r in chunk],
            )


def storage_devices(storage: Storage, device: str) -> None:
    from server.storage import devices

    with storage.write() as conn:
        if conn.execute(devices.select().where(devices.c.id == device)).first() is None:
            conn.execute(
                devices.insert().values(
                    id=device, token_hash=device.ljust(64, "0"), group_name="default", enrolled_at=0
                )
            )


def pages(
    client: TestClient, headers: dict[str, str], **params: Any
) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/admin/events/export", params=query, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in response.text.splitlines()]
        cursor = response.headers.get("mamori-next-cursor")
        yield events, cursor
        if cursor is None:
            return


@pytest.mark.slow
def test_100000_events_page_through_exactly_once_in_order(
    client: TestClient, storage: Storage, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {admin_token(storage)}"}
    # Three devices, interleaved times, several events per millisecond: the order must still be total.
    for i, device in enumerate(("dev-a", "dev-b", "dev-c")):
        fill(
            storage,
            device,
            33_334 if i == 0 else 33_333,
            time_of=lambda seq, i=i: BASE_MS + (seq * 3 + i) // 7,
        )
    assert storage.count_events() == 100_000
    seen: list[str] = []
    keys: list[tuple[int, str]] = []
    started = time.perf_counter()
    for n, (events, _cursor) in enumerate(pages(client, headers, limit=30_000)):
        seen.extend(e["metadata"]["uid"] for e in events)
        keys.extend((e["time"], e["metadata"]["uid"]) for e in events)
        if n == 0:
            # Events arriving while the export runs: later ones show up at the end, none repeats.
            fill(storage, "dev-late", 500, time_of=lambda seq: BASE_MS + 10**9 + seq)
    elapsed = time.perf_counter() - started
    assert len(seen) == 100_500 and len(set(seen)) == 100_500
    assert keys == sorted(keys)
    print(f"export: {len(seen)} events in {elapsed:.2f} s ({len(seen) / elapsed:,.0f} events/s) over the API")

    # The command exports the same, once each, straight from the database.
    out = tmp_path / "all.ndjson"
    db = str(storage.engine.url)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "server", "export", "--db", db, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "exported 100500 events" in done.stderr
    uids = [json.loads(line)["metadata"]["uid"] for line in out.read_text().splitlines()]
    assert uids == seen
    print(f"mamori server export: {len(uids)} events in {elapsed:.2f} s")


def test_filters_until_and_csv(client: TestClient, storage: Storage) -> None:
    headers = {"Authorization": f"Bearer {admin_token(storage)}"}
    fill(storage, "dev-a", 50, time_of=lambda seq: BASE_MS + seq * 60_000)
    fill(storage, "dev-b", 50, time_of=lambda seq: BASE_MS + seq * 60_000 + 1)
    since = datetime.fromtimestamp((BASE_MS + 10 * 60_000) / 1000, UTC).isoformat()
    until = datetime.fromtimestamp((BASE_MS + 20 * 60_000) / 1000, UTC).isoformat()
    events = [
        e
        for page, _ in pages(client, headers, since=since, until=until, device="dev-b", limit=3)
        for e in page
    ]
    assert [e["metadata"]["sequence"] for e in events] == list(range(10, 20))  # until is exclusive
    assert {e["device"]["uid"] for e in events} == {"dev-b"}
    none = client.get("/v1/admin/events/export", params={"class": 3002}, headers=headers)
    assert none.status_code == 200 and none.text == "" and "mamori-next-cursor" not in none.headers

    response = client.get(
        "/v1/admin/events/export", params={"format": "csv", "device": "dev-a"}, headers=headers
    )
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.text)))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == 51
    first = dict(zip(CSV_COLUMNS, table[1], strict=True))
    assert first["time"] == "2026-11-01T00:01:00.000Z" and first["device"] == "dev-a"
    assert (
        first["class_name"] == "Compliance Finding"
        and first["control"] == "vpn"
        and first["status"] == "Fail"
    )
    assert json.loads(first["unmapped"])["check_id"] == "vpn"
    assert response.text.count("\r\n") == 51  # RFC 4180 line ends


def test_bad_requests_are_refused(client: TestClient, storage: Storage) -> None:
    headers = {"Authorization": f"Bearer {admin_token(storage)}"}
    assert (
        client.get("/v1/admin/events/export", params={"cursor": "nonsense!"}, headers=headers).status_code
        == 400
    )
    assert client.get("/v1/admin/events/export", params={"format": "xml"}, headers=headers).status_code == 422
    assert client.get("/v1/admin/events/export").status_code == 401
    assert Cursor.decode(Cursor(5, "abc").encode()) == Cursor(5, "abc")
