"""What the console's pages show, read from storage: the overview's counts, rollout, coverage and daily
figures; one device; a filtered page of events; the policies with who acknowledged them. Queries only: the
state itself is derived at ingest (server/console/state.py)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from server.console.state import DAY_MS, day_of, split_by_day
from server.export import Cursor, ExportQuery, narrow
from server.settings import Settings
from server.status import device_status
from server.storage import (
    Storage,
    acknowledgements,
    console_daily,
    device_checks,
    devices,
    events,
    gaps,
    policies,
)

STATES = ("online", "away", "non_compliant", "silent", "stopped", "never_seen")
ATTENTION = ("non_compliant", "silent", "never_seen", "stopped", "away", "online")  # device list order
DEVICE_ROWS = 100
CHART_DAYS = 14
PAGE = 50
UNEXPECTED_WINDOW_MS = DAY_MS


def _status(row: Any, settings: Settings, now: int) -> str:
    return device_status(
        last_seen_ms=row.last_seen,
        stopped=bool(row.stopped),
        state=row.state,
        heartbeat_s=row.heartbeat_s,
        now_ms=now,
        silence_factor=settings.silence_factor,
        min_silence_s=settings.min_silence_s,
    )


def status_expression(settings: Settings, now: int) -> Any:
    """:func:`server.status.device_status` as a SQL expression, so that the overview counts 10 000 devices in
    the database instead of in Python (tests/server/test_console.py checks that both agree)."""

    def greatest(a: Any, b: Any) -> Any:
        return sa.case((a > b, a), else_=b)

    interval = greatest(sa.func.coalesce(devices.c.heartbeat_s, 300.0), 1.0) * settings.silence_factor
    limit_ms = greatest(interval, float(settings.min_silence_s)) * 1000
    return sa.case(
        (devices.c.last_seen.is_(None), "never_seen"),
        (devices.c.stopped.is_(True), "stopped"),
        (sa.literal(now, sa.BigInteger) - devices.c.last_seen > limit_ms, "silent"),
        (devices.c.state.in_(("online", "away", "non_compliant")), devices.c.state),
        else_="online",
    )


def overview(storage: Storage, settings: Settings, now: int) -> dict[str, Any]:
    from server.accounts import device_lifecycle, replaced_device_ids

    status = status_expression(settings, now).label("status")
    rank = sa.case(*((status == s, n) for n, s in enumerate(ATTENTION)), else_=len(ATTENTION))
    # Counted: enrolled devices neither revoked nor marked replaced (server/accounts.py); the replaced ones
    # have a tile of their own.
    active_devices = sa.and_(devices.c.revoked.is_(False), devices.c.id.not_in(replaced_device_ids()))
    counts = dict.fromkeys(STATES, 0)
    per_group: dict[str, int] = defaultdict(int)
    rollout: dict[str, dict[tuple[str | None, int | None], int]] = defaultdict(lambda: defaultdict(int))
    enrolled_days: dict[int, int] = defaultdict(int)
    with storage.engine.connect() as conn:
        # One scan of the devices for the counts, the rollout and the groups' sizes.
        grouped = (devices.c.group_name, devices.c.policy_id, devices.c.policy_version, status)
        unexpected = 0
        for row in conn.execute(
            sa.select(
                *grouped,
                sa.func.count(),
                sa.func.count().filter(devices.c.unexpected_stop_at >= now - UNEXPECTED_WINDOW_MS),
            )
            .where(active_devices)
            .group_by(*grouped)
        ):
            group, policy_id, version, state, n = row[0], row[1], row[2], row[3], int(row[4])
            counts[state] += n
            per_group[group] += n
            rollout[group][(policy_id, version)] += n
            unexpected += int(row[5] or 0)
        replaced_n = int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(device_lifecycle.join(devices, devices.c.id == device_lifecycle.c.device_id))
                .where(device_lifecycle.c.replaced_at.is_not(None))  # replacing revokes the old PC too
            ).scalar_one()
        )
        enrolled_day = (devices.c.enrolled_at // DAY_MS).label("day")
        for row in conn.execute(
            sa.select(enrolled_day, sa.func.count()).where(active_devices).group_by(enrolled_day)
        ):
            enrolled_days[int(row[0])] += int(row[1])
        # The devices that need attention first: those not online by rank, then the online ones by name.
        listed = [
            devices.c.id,
            devices.c.hostname,
            devices.c.failing,
            devices.c.group_name,
            devices.c.last_seen,
            devices.c.policy_id,
            devices.c.policy_version,
            status,
        ]
        name = sa.func.coalesce(devices.c.hostname, devices.c.id)
        shown = list(
            conn.execute(
                sa.select(*listed)
                .where(active_devices, status != "online")
                .order_by(rank, name)
                .limit(DEVICE_ROWS)
            )
        )
        if len(shown) < DEVICE_ROWS:
            shown += conn.execute(
                sa.select(*listed)
                .where(active_devices, status == "online")
                .order_by(name)
                .limit(DEVICE_ROWS - len(shown))
            ).all()
        versions = conn.execute(
            sa.select(policies.c.group_name, policies.c.policy_id, policies.c.version).order_by(
                policies.c.group_name, policies.c.version.desc()
            )
        ).all()
        acked_by = (acknowledgements.c.group_name, acknowledgements.c.policy_id, acknowledgements.c.version)
        acked = conn.execute(sa.select(*acked_by, sa.func.count().label("n")).group_by(*acked_by)).all()
        today = day_of(now)
        first = today - CHART_DAYS + 1
        daily = conn.execute(
            sa.select(
                console_daily.c.day, console_daily.c.metric, console_daily.c.key, console_daily.c.value
            ).where(console_daily.c.day >= first)
        ).all()
        open_failures = conn.execute(
            sa.select(device_checks.c.check_id, device_checks.c.failing_since).where(
                device_checks.c.failing_since.is_not(None)
            )
        ).all()
        missing = dict(
            conn.execute(
                sa.select(gaps.c.device_id, sa.func.sum(gaps.c.last_seq - gaps.c.first_seq + 1))
                .where(gaps.c.device_id.in_([row.id for row in shown]))
                .group_by(gaps.c.device_id)
            ).all()
        )
    device_rows = [
        {
            "id": row.id,
            "hostname": row.hostname,
            "group_name": row.group_name,
            "status": row.status,
            "last_seen": row.last_seen,
            "policy_id": row.policy_id,
            "policy_version": row.policy_version,
            "failing": json.loads(row.failing) if row.failing else [],
            "missing_events": int(missing.get(row.id) or 0),
        }
        for row in shown
    ]
    ack_n = {(r.group_name, r.policy_id, int(r.version)): int(r.n) for r in acked}
    coverage = [
        {
            "group": v.group_name,
            "policy_id": v.policy_id,
            "version": int(v.version),
            "acknowledged": ack_n.get((v.group_name, v.policy_id, int(v.version)), 0),
            "devices": per_group.get(v.group_name, 0),
        }
        for v in versions
    ]
    groups = sorted(set(per_group) | {v.group_name for v in versions})
    rollout_rows = [
        {
            "group": group,
            "devices": per_group.get(group, 0),
            "versions": sorted(
                (
                    {"policy_id": pid, "version": ver, "devices": n}
                    for (pid, ver), n in rollout.get(group, {}).items()
                ),
                key=lambda item: (item["version"] is None, -int(item["version"] or 0)),
            ),
        }
        for group in groups
    ]
    days = list(range(first, today + 1))
    protections = dict.fromkeys(days, 0.0)
    active = dict.fromkeys(days, 0)
    noncompliant: dict[str, dict[int, float]] = defaultdict(lambda: dict.fromkeys(days, 0.0))
    for r in daily:
        if r.metric == "protections":
            protections[r.day] += r.value
        elif r.metric == "active":
            active[r.day] += int(r.value)
        elif r.metric == "noncompliant_ms":
            noncompliant[r.key][r.day] += r.value / 60_000
    for f in open_failures:  # still failing: the minutes up to now count too
        for day, part in split_by_day(max(int(f.failing_since), first * DAY_MS), now):
            if day in noncompliant[f.check_id]:
                noncompliant[f.check_id][day] += part / 60_000
    enrolled_before = sum(n for d, n in enrolled_days.items() if d < first)
    silent: list[float] = []
    for day in days:
        enrolled_before += enrolled_days.get(day, 0)
        silent.append(float(max(0, enrolled_before - active[day])))
    return {
        "counts": counts,
        "device_rows": device_rows,
        "more_devices": max(0, sum(counts.values()) - DEVICE_ROWS),
        "total": sum(counts.values()),
        "unexpected": unexpected,
        "replaced": replaced_n,
        "rollout": rollout_rows,
        "coverage": coverage,
        "days": days,
        "protections": [protections[d] for d in days],
        "noncompliant": {check: [per[d] for d in days] for check, per in sorted(noncompliant.items())},
        "silent": silent,
    }


def device(storage: Storage, settings: Settings, device_id: str, now: int) -> dict[str, Any] | None:
    from server.accounts import device_lifecycle

    with storage.engine.connect() as conn:
        row = conn.execute(sa.select(devices).where(devices.c.id == device_id)).first()
        if row is None:
            return None
        checks = conn.execute(
            sa.select(device_checks)
            .where(device_checks.c.device_id == device_id)
            .order_by(device_checks.c.check_id)
        ).all()
        missing = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(gaps.c.last_seq - gaps.c.first_seq + 1), 0)).where(
                gaps.c.device_id == device_id
            )
        ).scalar_one()
        lifecycle = conn.execute(
            sa.select(device_lifecycle.c.replaced_at).where(device_lifecycle.c.device_id == device_id)
        ).first()
        acks = conn.execute(
            sa.select(acknowledgements)
            .where(acknowledgements.c.device_id == device_id)
            .order_by(acknowledgements.c.acked_at.desc())
        ).all()
    info = {k: v for k, v in row._mapping.items() if k != "token_hash"}
    info["status"] = _status(row, settings, now)
    info["failing"] = json.loads(row.failing) if row.failing else []
    info["missing_events"] = int(missing)
    info["replaced"] = lifecycle is not None and lifecycle.replaced_at is not None
    return {
        "device": info,
        "checks": [dict(c._mapping) for c in checks],
        "acks": [dict(a._mapping) for a in acks],
        "timeline": storage.events(device=device_id, limit=100),
    }


def events_page(
    storage: Storage, query: ExportQuery, before: Cursor | None, limit: int = PAGE
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Newest first, ``limit`` a page; the cursor of the next (older) page, None on the last."""
    stmt = narrow(sa.select(events.c.time, events.c.uid, events.c.body), query)
    if before is not None:
        stmt = stmt.where(
            sa.or_(
                events.c.time < before.time, sa.and_(events.c.time == before.time, events.c.uid < before.uid)
            )
        )
    stmt = stmt.order_by(events.c.time.desc(), events.c.uid.desc()).limit(limit + 1)
    with storage.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    more = len(rows) > limit
    rows = rows[:limit]
    page = [json.loads(r.body) for r in rows]
    return page, (Cursor(int(rows[-1].time), str(rows[-1].uid)) if more and rows else None)


def filter_choices(storage: Storage) -> dict[str, list[Any]]:
    with storage.engine.connect() as conn:
        group_names = sorted(conn.execute(sa.select(devices.c.group_name).distinct()).scalars())
        check_ids = sorted(conn.execute(sa.select(device_checks.c.check_id).distinct()).scalars())
    return {"groups": group_names, "checks": check_ids}


def policies_page(storage: Storage, ack_limit: int = 200) -> list[dict[str, Any]]:
    with storage.engine.connect() as conn:
        versions = conn.execute(
            sa.select(
                policies.c.group_name, policies.c.policy_id, policies.c.version, policies.c.uploaded_at
            ).order_by(policies.c.group_name, policies.c.version.desc())
        ).all()
        on_version = {
            (r.group_name, r.policy_id, r.policy_version): int(r.n)
            for r in conn.execute(
                sa.select(
                    devices.c.group_name,
                    devices.c.policy_id,
                    devices.c.policy_version,
                    sa.func.count().label("n"),
                ).group_by(devices.c.group_name, devices.c.policy_id, devices.c.policy_version)
            )
        }
        group_sizes = {
            r.group_name: int(r.n)
            for r in conn.execute(
                sa.select(devices.c.group_name, sa.func.count().label("n")).group_by(devices.c.group_name)
            )
        }
        result = []
        for v in versions:
            join = acknowledgements.join(devices, devices.c.id == acknowledgements.c.device_id)
            where = (
                acknowledgements.c.policy_id == v.policy_id,
                acknowledgements.c.version == v.version,
                acknowledgements.c.group_name == v.group_name,
            )
            total = conn.execute(
                sa.select(sa.func.count()).select_from(acknowledgements).where(*where)
            ).scalar_one()
            who = conn.execute(
                sa.select(acknowledgements.c.device_id, devices.c.hostname, acknowledgements.c.acked_at)
                .select_from(join)
                .where(*where)
                .order_by(acknowledgements.c.acked_at.desc())
                .limit(ack_limit)
            ).all()
            result.append(
                {
                    "group": v.group_name,
                    "policy_id": v.policy_id,
                    "version": int(v.version),
                    "published": int(v.uploaded_at),
                    "devices_on": on_version.get((v.group_name, v.policy_id, v.version), 0),
                    "group_devices": group_sizes.get(v.group_name, 0),
                    "acknowledged": int(total),
                    "who": [dict(w._mapping) for w in who],
                }
            )
    return result


def hostnames(storage: Storage, device_ids: set[str]) -> dict[str, str]:
    """Device id -> host name (or the id when it has none), for the devices of a page of events."""
    if not device_ids:
        return {}
    with storage.engine.connect() as conn:
        rows = conn.execute(
            sa.select(devices.c.id, devices.c.hostname).where(devices.c.id.in_(sorted(device_ids)))
        ).all()
    return {row.id: row.hostname or row.id for row in rows}
