"""Device state derived from events as they arrive (issue 14): written by ingest in its own transaction, read by
the console, so a device failing a blocking check shows non-compliant with the policy version it applied as
soon as its events land, not at its next heartbeat.

What each event kind changes:

* ``posture.finding``: the device's row in ``device_checks`` (status, mode, enforcement, failing since); a
  check failing under ``warn`` or ``block`` makes the device non-compliant (as server/report.py counts it), and
  the minutes it failed are added to the day's ``noncompliant_ms`` figure for that check when it passes again.
* ``policy.applied``: the device's policy id and version.
* ``policy.acknowledged``: a row in ``acknowledgements`` (who acknowledged which version, when).
* ``agent.started`` while the agent was running (no ``agent.stopped`` since the last start): an unexpected stop.
* ``protection.applied``: the day's ``protections`` figure.
* every batch: the device was heard from today (``active`` figure; silent devices per day are the others).

Days are UTC days (``time // 86 400 000``). Events older than the state they would change (a late batch) still
count in the daily figures but do not move the current state back.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.storage import EventRow, acknowledgements, console_daily, device_checks, devices

DAY_MS = 86_400_000
DERIVING = frozenset(
    {"posture.finding", "policy.applied", "policy.acknowledged", "agent.started", "agent.stopped"}
)
ENFORCED = ("warn", "block")

# device id -> the UTC day this process last recorded it as heard from; spares a statement per batch. Several
# processes each record a device once a day at most: the conditional UPDATE below counts it once.
_active_day: dict[str, int] = {}


def day_of(ms_value: int) -> int:
    return ms_value // DAY_MS


def split_by_day(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) in epoch ms -> [(UTC day, ms within that day)]."""
    parts: list[tuple[int, int]] = []
    while start < end:
        day = day_of(start)
        stop = min(end, (day + 1) * DAY_MS)
        parts.append((day, stop - start))
        start = stop
    return parts


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def add_daily(conn: Connection, figures: dict[tuple[int, str, str], int]) -> None:
    if not figures:
        return
    stmt = _insert(conn, console_daily)
    stmt = stmt.on_conflict_do_update(
        index_elements=["day", "metric", "key"], set_={"value": console_daily.c.value + stmt.excluded.value}
    )
    conn.execute(
        stmt, [{"day": d, "metric": m, "key": k, "value": v} for (d, m, k), v in sorted(figures.items())]
    )


def derive(conn: Connection, device_id: str, inserted: Sequence[EventRow], now: int) -> None:
    """Apply newly inserted events (duplicates already removed) to the device's derived state."""
    figures: dict[tuple[int, str, str], int] = defaultdict(int)
    today = day_of(now)
    if _active_day.get(device_id) != today:
        marked = conn.execute(
            devices.update()
            .where(
                devices.c.id == device_id,
                sa.or_(devices.c.active_day.is_(None), devices.c.active_day != today),
            )
            .values(active_day=today)
        )
        if marked.rowcount == 1:
            figures[(today, "active", "")] += 1
        _active_day[device_id] = today
    relevant: list[tuple[int, int, str, dict[str, Any]]] = []
    for row in inserted:
        if row.event_code == "protection.applied":
            figures[(day_of(row.time), "protections", "")] += 1
        elif row.event_code in DERIVING:
            data = orjson.loads(row.body).get("unmapped") or {}
            relevant.append((row.time, row.sequence, row.event_code, data if isinstance(data, dict) else {}))
    if relevant:
        relevant.sort(key=lambda item: (item[0], item[1]))
        _apply(conn, device_id, relevant, figures)
    add_daily(conn, figures)


def _apply(
    conn: Connection,
    device_id: str,
    relevant: list[tuple[int, int, str, dict[str, Any]]],
    figures: dict[tuple[int, str, str], int],
) -> None:
    checks = {
        str(d["check_id"]) for _t, _s, code, d in relevant if code == "posture.finding" and "check_id" in d
    }
    current: dict[str, dict[str, Any]] = {}
    if checks:
        rows = conn.execute(
            sa.select(device_checks).where(
                device_checks.c.device_id == device_id, device_checks.c.check_id.in_(sorted(checks))
            )
        ).mappings()
        current = {r["check_id"]: dict(r) for r in rows}
    device = conn.execute(
        sa.select(devices.c.running, devices.c.state, devices.c.group_name).where(devices.c.id == device_id)
    ).first()
    if device is None:
        return
    running = bool(device.running)
    values: dict[str, Any] = {}
    changed: set[str] = set()
    acks: list[dict[str, Any]] = []
    for when, _seq, code, data in relevant:
        if code == "posture.finding" and "check_id" in data:
            check = str(data["check_id"])
            row = current.get(check)
            if row is not None and when < row["updated_at"]:
                continue  # an older finding than the one in force
            failing = data.get("status") == "fail" and data.get("mode") in ENFORCED
            since = row["failing_since"] if row is not None else None
            if failing and since is None:
                since = when
            elif not failing and since is not None:
                for day, part in split_by_day(int(since), when):
                    figures[(day, "noncompliant_ms", check)] += part
                since = None
            current[check] = {
                "device_id": device_id,
                "check_id": check,
                "status": str(data.get("status", "")),
                "mode": str(data.get("mode", "")),
                "enforcement": str(data.get("enforcement", "none")),
                "failing_since": since,
                "updated_at": when,
            }
            changed.add(check)
        elif code == "policy.applied" and "policy_id" in data:
            values["policy_id"] = str(data["policy_id"])
            values["policy_version"] = int(data.get("version", 0))
        elif code == "policy.acknowledged" and "policy_id" in data:
            acks.append(
                {
                    "device_id": device_id,
                    "policy_id": str(data["policy_id"]),
                    "version": int(data.get("version", 0)),
                    "group_name": device.group_name,
                    "acked_at": when,
                }
            )
        elif code == "agent.started":
            if running:
                values["unexpected_stop_at"] = when
            running = True
            values["running"] = True
            values["stopped"] = False
        elif code == "agent.stopped":
            running = False
            values["running"] = False
            values["stopped"] = True
    if changed:
        stmt = _insert(conn, device_checks)
        stmt = stmt.on_conflict_do_update(
            index_elements=["device_id", "check_id"],
            set_={
                c: stmt.excluded[c] for c in ("status", "mode", "enforcement", "failing_since", "updated_at")
            },
        )
        conn.execute(stmt, [current[c] for c in sorted(changed)])
        failing_now = sorted(
            conn.execute(
                sa.select(device_checks.c.check_id).where(
                    device_checks.c.device_id == device_id,
                    device_checks.c.status == "fail",
                    device_checks.c.mode.in_(ENFORCED),
                )
            ).scalars()
        )
        values["failing"] = json.dumps(failing_now)
        if failing_now:
            values["state"] = "non_compliant"
        elif device.state == "non_compliant":
            values["state"] = "online"
    if acks:
        conn.execute(_insert(conn, acknowledgements).on_conflict_do_nothing(), acks)
    if values:
        conn.execute(devices.update().where(devices.c.id == device_id).values(**values))
