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

import functools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from server.storage import EventRow, acknowledgements, console_daily, devices

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


def _insert(dialect: str, table: sa.Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


# The statements, built once per dialect: ingest runs them for every batch, and building a SQLAlchemy statement
# costs more than running these small ones on SQLite.
@functools.cache
def _statements(dialect: str) -> dict[str, Any]:
    daily = _insert(dialect, console_daily)
    device_id: Any = sa.bindparam("device_id")
    return {
        "daily": daily.on_conflict_do_update(
            index_elements=["day", "metric", "key"],
            set_={"value": console_daily.c.value + daily.excluded.value},
        ),
        "acks": _insert(dialect, acknowledgements).on_conflict_do_nothing(),
        "active": devices.update()
        .where(
            devices.c.id == device_id,
            sa.or_(devices.c.active_day.is_(None), devices.c.active_day != sa.bindparam("today")),
        )
        .values(active_day=sa.bindparam("today")),
        "device": sa.select(devices.c.running, devices.c.state, devices.c.group_name).where(
            devices.c.id == device_id
        ),
    }


def add_daily(conn: Connection, figures: dict[tuple[int, str, str], int]) -> None:
    if not figures:
        return
    conn.execute(
        _statements(conn.dialect.name)["daily"],
        [{"day": d, "metric": m, "key": k, "value": v} for (d, m, k), v in sorted(figures.items())],
    )


def derive(
    conn: Connection,
    device_id: str,
    inserted: Sequence[EventRow],
    now: int,
    facts: Mapping[str, Any] | None = None,
) -> None:
    """Apply newly inserted events (duplicates already removed) to the device's derived state. ``facts``: the
    events' data by uid when ingest already parsed them (else the bodies are parsed here)."""
    figures: dict[tuple[int, str, str], int] = defaultdict(int)
    today = day_of(now)
    if _active_day.get(device_id) != today:
        marked = conn.execute(
            _statements(conn.dialect.name)["active"], {"device_id": device_id, "today": today}
        )
        if marked.rowcount == 1:
            figures[(today, "active", "")] += 1
        _active_day[device_id] = today
    relevant: list[tuple[int, int, str, dict[str, Any]]] = []
    for row in inserted:
        if row.event_code == "protection.applied":
            figures[(day_of(row.time), "protections", "")] += 1
        elif row.event_code in DERIVING:
            data = facts.get(row.uid) if facts is not None else None
            if data is None:
                data = orjson.loads(row.body).get("unmapped") or {}
            relevant.append((row.time, row.sequence, row.event_code, data if isinstance(data, dict) else {}))
    if relevant:
        relevant.sort(key=lambda item: (item[0], item[1]))
        _apply(conn, device_id, relevant, figures)
    add_daily(conn, figures)


# device_checks rows as the driver's tuples: a batch can hold hundreds of findings, and SQLAlchemy's per-row
# parameter handling cost more than the statements themselves (docs/performance.md). Values bound, never built in.
_CHECK_COLUMNS = ("device_id", "check_id", "status", "mode", "enforcement", "failing_since", "updated_at")
_UPSERT_CHECKS = (
    f"INSERT INTO device_checks ({', '.join(_CHECK_COLUMNS)}) VALUES ({{marks}}) "  # noqa: S608
    "ON CONFLICT (device_id, check_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _CHECK_COLUMNS[2:])
)
# Only the checks a batch names are read (a device's other checks do not change), and the failing list is read
# back after the upsert: reading every check of the device each batch grew with the checks it ever reported.
_SELECT_CHECKS = (
    "SELECT check_id, status, mode, failing_since, updated_at FROM device_checks "
    "WHERE device_id = {mark} AND check_id IN ({marks})"
)
_SELECT_FAILING = (
    "SELECT check_id FROM device_checks WHERE device_id = {mark} AND status = 'fail' "
    "AND mode IN ('warn', 'block')"
)
assert ENFORCED == ("warn", "block"), "_SELECT_FAILING spells ENFORCED out"
_IN_CHUNK = 500  # bound parameters per IN list, below every SQLite's limit


@functools.cache
def _driver_sql(dialect: str, names: int) -> tuple[str, str, str]:
    """(upsert, select ``names`` checks, select the failing ones), built from constants and integers only."""
    mark = "%s" if dialect == "postgresql" else "?"
    return (
        _UPSERT_CHECKS.format(marks=", ".join([mark] * len(_CHECK_COLUMNS))),
        _SELECT_CHECKS.format(mark=mark, marks=", ".join([mark] * names)),
        _SELECT_FAILING.format(mark=mark),
    )


def _read_checks(
    conn: Connection, device_id: str, checks: list[str]
) -> dict[str, tuple[str, str, int | None, int]]:
    """check id -> (status, mode, failing_since, updated_at) of the named checks the device has a row for."""
    current: dict[str, tuple[str, str, int | None, int]] = {}
    for i in range(0, len(checks), _IN_CHUNK):
        chunk = checks[i : i + _IN_CHUNK]
        select = _driver_sql(conn.dialect.name, len(chunk))[1]
        for r in conn.exec_driver_sql(select, (device_id, *chunk)):
            current[r[0]] = (r[1], r[2], r[3], r[4])
    return current


def _apply(
    conn: Connection,
    device_id: str,
    relevant: list[tuple[int, int, str, dict[str, Any]]],
    figures: dict[tuple[int, str, str], int],
) -> None:
    statements = _statements(conn.dialect.name)
    upsert_checks, _select, select_failing = _driver_sql(conn.dialect.name, 1)
    device = conn.execute(statements["device"], {"device_id": device_id}).first()
    if device is None:
        return
    named = sorted(
        {str(d["check_id"]) for _t, _s, code, d in relevant if code == "posture.finding" and "check_id" in d}
    )
    # check id -> (status, mode, failing_since, updated_at) of the checks this batch reports on
    current = _read_checks(conn, device_id, named) if named else {}
    running = bool(device.running)
    values: dict[str, Any] = {}
    changed: dict[str, tuple[Any, ...]] = {}
    acks: list[dict[str, Any]] = []
    for when, _seq, code, data in relevant:
        if code == "posture.finding" and "check_id" in data:
            check = str(data["check_id"])
            row = current.get(check)
            if row is not None and when < row[3]:
                continue  # an older finding than the one in force
            status, mode = str(data.get("status", "")), str(data.get("mode", ""))
            failing = status == "fail" and mode in ENFORCED
            since = row[2] if row is not None else None
            if failing and since is None:
                since = when
            elif not failing and since is not None:
                for day, part in split_by_day(int(since), when):
                    figures[(day, "noncompliant_ms", check)] += part
                since = None
            current[check] = (status, mode, since, when)
            changed[check] = (
                device_id,
                check,
                status,
                mode,
                str(data.get("enforcement", "none")),
                since,
                when,
            )
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
        conn.exec_driver_sql(upsert_checks, [changed[c] for c in sorted(changed)])
        # sorted here, not by ORDER BY: PostgreSQL would order by the database's collation
        failing_now = sorted(str(r[0]) for r in conn.exec_driver_sql(select_failing, (device_id,)))
        values["failing"] = json.dumps(failing_now)
        if failing_now:
            values["state"] = "non_compliant"
        elif device.state == "non_compliant":
            values["state"] = "online"
    if acks:
        conn.execute(statements["acks"], acks)
    if values:
        conn.execute(devices.update().where(devices.c.id == device_id).values(**values))
