"""The console's overview (``GET /``) with 10 000 devices and 1 000 000 events, on SQLite or PostgreSQL
(issue 14 target: renders in under 500 ms).

The database is migrated, then filled directly in SQL (ingesting a million events through the API would take
the whole benchmark budget and measures ingest, not the console): devices in five groups with varied states,
policies and agent versions; the events (posture findings of the devices, one stored body repeated); and the
state ingest derives from events (server/console/state.py): five checks per device, a tenth of them failing,
acknowledgements of the policy versions by most devices, 14 days of daily figures; one device in 200 is
marked replaced (server/accounts.py). The overview is then
fetched through the real application (create_app, signed in with an admin token) ``--rounds`` times after one
warm-up; the figure is the p95 of the wall time of each full request (queries, rendering, SVG charts).

Usage: python -m benchmarks.console_bench [--devices 10000] [--events 1000000] [--db URL] [--rounds 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

DAY_MS = 86_400_000
GROUPS = ("sales", "support", "dev", "finance", "default")
CHECKS = ("vpn", "wifi", "device.disk_encryption", "device.firewall", "device.screen_lock")


def body(device_id: str, now_ms: int) -> str:
    from datetime import UTC, datetime

    from agent.report.events import build_record, rule_context, stamp_device
    from agent.report.stream import AgentEvent, Kind

    data = {"check_id": "vpn", "status": "fail", "mode": "block", "enforcement": "block"}
    when = datetime.fromtimestamp(now_ms / 1000, UTC)
    record = stamp_device(
        build_record(AgentEvent(Kind.POSTURE_FINDING, when, data), rule_context()), device_id
    )
    record["metadata"]["sequence"] = 1
    return json.dumps(record, separators=(",", ":"))


def seed(url: str, n_devices: int, n_events: int, now: int) -> float:
    from server.accounts import device_lifecycle
    from server.storage import (
        acknowledgements,
        console_daily,
        device_checks,
        devices,
        policies,
    )
    from tests.harness.live_server import migrated

    began = time.monotonic()
    storage = migrated(url)
    states = ("online", "online", "online", "away", "non_compliant")
    rows = []
    for i in range(n_devices):
        group = GROUPS[i % len(GROUPS)]
        silent = i % 50 == 0
        rows.append(
            {
                "id": f"dev-{i:05d}",
                "token_hash": f"{i:064x}",
                "group_name": group,
                "hostname": f"pc-{i:05d}",
                "os": "windows" if i % 3 else "macos",
                "enrolled_at": now - (30 + i % 20) * DAY_MS,
                "last_seen": now - (3 * 3600_000 if silent else (i % 120) * 1000),
                "state": states[i % len(states)],
                "failing": json.dumps(["vpn"]) if states[i % len(states)] == "non_compliant" else None,
                "heartbeat_s": 300.0,
                "stopped": i % 97 == 0,
                "agent_version": "1.4.0",
                "policy_id": "acme-remote",
                "policy_version": 3 if i % 4 else 2,
                "unexpected_stop_at": now - 3600_000 if i % 211 == 0 else None,
                "active_day": now // DAY_MS,
            }
        )
    checks = [
        {
            "device_id": f"dev-{i:05d}",
            "check_id": c,
            "status": "fail" if (i % 10 == 0 and c == "vpn") else "pass",
            "mode": "block",
            "enforcement": "block" if (i % 10 == 0 and c == "vpn") else "none",
            "failing_since": now - 2 * 3600_000 if (i % 10 == 0 and c == "vpn") else None,
            "updated_at": now - 60_000,
        }
        for i in range(n_devices)
        for c in CHECKS
    ]
    acks = [
        {
            "device_id": f"dev-{i:05d}",
            "policy_id": "acme-remote",
            "version": v,
            "group_name": GROUPS[i % len(GROUPS)],
            "acked_at": now - v * 3600_000,
        }
        for i in range(n_devices)
        for v in (2, 3)
        if (i % 7) or v == 2
    ]
    today = now // DAY_MS
    daily = []
    for d in range(today - 13, today + 1):
        daily.append({"day": d, "metric": "protections", "key": "", "value": 5000 + d % 7 * 300})
        daily.append({"day": d, "metric": "active", "key": "", "value": n_devices - 200 - d % 5 * 30})
        for c in CHECKS:
            daily.append({"day": d, "metric": "noncompliant_ms", "key": c, "value": (d % 5 + 1) * 3_600_000})
    sample = body("dev-00000", now)
    with storage.engine.begin() as conn:
        conn.execute(devices.insert(), rows)
        conn.execute(device_checks.insert(), checks)
        conn.execute(acknowledgements.insert(), acks)
        conn.execute(console_daily.insert(), daily)
        conn.execute(
            device_lifecycle.insert(),
            [
                {"device_id": f"dev-{i:05d}", "replaced_at": now - DAY_MS, "replaced_by": "bench"}
                for i in range(0, n_devices, 200)
            ],
        )
        for group in GROUPS:
            for version in (1, 2, 3):
                conn.execute(
                    policies.insert().values(
                        group_name=group,
                        policy_id="acme-remote",
                        version=version,
                        bundle=b"{}",
                        etag=f'"{group}{version}"',
                        uploaded_at=now - (4 - version) * 7 * DAY_MS,
                    )
                )
        step = max(1, (14 * DAY_MS) // max(n_events, 1))
        add_events(conn, storage.is_sqlite, 0, n_events, n_devices, now - 14 * DAY_MS, step, sample)
    analyze(storage)
    storage.dispose()
    return time.monotonic() - began


def add_events(
    conn: sa.Connection,
    is_sqlite: bool,
    first: int,
    count: int,
    n_devices: int,
    base: int,
    step: int,
    body: str,
) -> None:
    """Events ``first`` .. ``first + count - 1`` in one statement: event i is device ``i % n_devices``'s
    posture finding number ``i // n_devices + 1``, at ``base + i * step`` (a negative step: later events are
    older), ``body`` stored for each. Distinct ``first`` ranges never collide (uid and sequence follow i)."""
    params = {"first": first, "last": first + count - 1, "devices": n_devices, "base": base, "step": step}
    if count <= 0:
        return
    if is_sqlite:
        conn.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) "
            "INSERT INTO events (uid, device_id, sequence, class_uid, type_uid, severity_id, event_code, time, "
            "received_at, body) SELECT printf('00000000-0000-4000-8000-%012x', i), "
            "printf('dev-%05d', i % ?3), i / ?3 + 1, 2003, 200302, 4, 'posture.finding', "
            "?4 + i * ?5, ?4 + i * ?5, ?6 FROM n",
            (params["first"], params["last"], n_devices, base, step, body),
        )
    else:
        conn.execute(
            sa.text(
                "INSERT INTO events (uid, device_id, sequence, class_uid, type_uid, severity_id, event_code, "
                "time, received_at, body) SELECT '00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), "
                "'dev-' || lpad((i % :devices)::text, 5, '0'), i / :devices + 1, 2003, 200302, 4, "
                "'posture.finding', :base + i * :step, :base + i * :step, :body "
                "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS i"
            ),
            {**params, "body": body},
        )


def analyze(storage: Any, table: str = "") -> None:
    """Fresh planner statistics after a bulk fill, of ``table`` or of every table (PostgreSQL: outside a
    transaction, and every table of the database, other schemas too)."""
    statement = f"ANALYZE {table}".strip()
    with storage.engine.connect() as conn:
        if storage.is_sqlite:
            conn.exec_driver_sql(statement)
        else:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(statement)


def measure(url: str, rounds: int, now: int) -> list[float]:
    from fastapi.testclient import TestClient

    from core.clock import FakeClock
    from server.app import create_app
    from server.settings import Settings
    from server.storage import Storage
    from tests.harness.live_server import admin_token

    storage = Storage(url)
    clock = FakeClock()
    token = admin_token(storage)
    times: list[float] = []
    try:
        with TestClient(create_app(Settings(db_url=url), storage, clock)) as client:
            signed = client.post(
                "/login",
                content=f"token={token}",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                follow_redirects=False,
            )
            if signed.status_code != 303:
                raise SystemExit(f"sign-in failed: {signed.status_code}")
            for n in range(rounds + 1):
                began = time.perf_counter()
                response = client.get("/?lang=ja")
                took = (time.perf_counter() - began) * 1000
                if response.status_code != 200 or 'id="chart-silent"' not in response.text:
                    raise SystemExit(f"overview failed: {response.status_code} {response.text[:200]}")
                if n:
                    times.append(took)
    finally:
        storage.dispose()
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--db", default="", help="PostgreSQL URL; SQLite in a temporary directory without it")
    parser.add_argument("--pg-schema", default="bench_console")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from core.clock import FakeClock

    now = int(FakeClock().now().timestamp() * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        if args.db:
            from benchmarks.ingest_agents import own_schema

            url, db = own_schema(args.db, args.pg_schema), "postgresql"
        else:
            url, db = f"sqlite:///{Path(tmp) / 'console.db'}", "sqlite"
        seeded = seed(url, args.devices, args.events, now)
        times = sorted(measure(url, args.rounds, now))
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    result = {
        "db": db,
        "devices": args.devices,
        "events": args.events,
        "rounds": len(times),
        "seed_s": round(seeded, 1),
        "min_ms": round(times[0], 1),
        "median_ms": round(times[len(times) // 2], 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(times[-1], 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"overview on {db}: median {result['median_ms']} ms, p95 {result['p95_ms']} ms", file=sys.stderr
        )
    return result


if __name__ == "__main__":
    main()
