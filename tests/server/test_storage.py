"""Storage and migrations on SQLite and the real PostgreSQL: the migrated schema is the one the code queries,
ingest is idempotent and transactional, enrollment secrets cannot be over-used under concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server import forward_store, migrate
from server.storage import EnrollRefusedError, EventRow, Storage, metadata
from server.storage import devices as devices_table
from tests.harness.live_server import migrated

assert forward_store.forward_outbox.metadata is metadata  # the forwarder tables are part of the schema


def rows(*seqs: int, prefix: str = "u") -> list[EventRow]:
    return [EventRow(f"{prefix}{s}", s, 2003, 200302, 3, "posture.finding", 1_000 + s, "{}") for s in seqs]


def test_migrations_create_exactly_the_schema_the_code_uses(store: Storage) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert migrate.is_current(store.engine)


def test_downgrade_and_upgrade_again(store: Storage) -> None:
    migrate.downgrade(store.engine, "base")
    assert sa.inspect(store.engine).get_table_names() in ([], ["alembic_version"])
    migrate.upgrade(store.engine)
    assert migrate.is_current(store.engine)


def test_ingest_is_idempotent_and_tracks_gaps(store: Storage) -> None:
    store.create_enroll_secret("s", "default", 1, None, 0)
    store.enroll("s", "dev1", "t", {}, 0)
    assert store.ingest("dev1", rows(1, 2, 5), 10) == (3, 0)
    assert store.ingest("dev1", rows(1, 2, 5, 3), 11) == (1, 3)
    assert [(g.first, g.last) for g in store.gaps_of("dev1")] == [(4, 4)]
    assert store.ingest("dev1", rows(4), 12) == (1, 0)
    assert store.gaps_of("dev1") == [] and store.count_events("dev1") == 5


def test_large_batches_with_some_duplicates_store_exactly_the_new_events(store: Storage) -> None:
    # 623 rows cut into multi-row INSERTs of several sizes on SQLite; the resend mixes old and new events.
    store.create_enroll_secret("s", "default", 1, None, 0)
    store.enroll("s", "dev1", "t", {}, 0)
    assert store.ingest("dev1", rows(*range(1, 624)), 10) == (623, 0)
    assert store.ingest("dev1", rows(*range(600, 700), 650, 5, 800), 11) == (77, 26)
    assert [(g.first, g.last) for g in store.gaps_of("dev1")] == [(700, 799)]
    assert store.count_events("dev1") == 700
    assert store.ingest("dev1", rows(*range(700, 800)), 12) == (100, 0)
    assert store.gaps_of("dev1") == [] and store.count_events("dev1") == 800
    with store.engine.connect() as conn:
        bodies = conn.execute(sa.text("SELECT count(*) FROM events WHERE received_at = 11")).scalar_one()
    assert bodies == 77


def test_concurrent_enrollment_never_overuses_a_secret(store: Storage) -> None:
    store.create_enroll_secret("s", "default", 3, None, 0)
    results: list[str] = []

    def attempt(i: int) -> None:
        try:
            store.enroll("s", f"dev{i}", f"tok{i}", {}, 0)
            results.append("ok")
        except EnrollRefusedError as err:
            results.append(err.reason)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 3 and results.count("used up") == 5
    assert len(store.devices()) == 3


def test_concurrent_resends_store_each_event_once(store: Storage) -> None:
    store.create_enroll_secret("s", "default", 1, None, 0)
    store.enroll("s", "dev1", "t", {}, 0)
    batch = rows(*range(1, 201))
    totals: list[tuple[int, int]] = []
    threads = [
        threading.Thread(target=lambda: totals.append(store.ingest("dev1", batch, 0))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a for a, _ in totals) == 200 and sum(d for _, d in totals) == 600
    assert store.count_events() == 200 and store.gaps_of("dev1") == []


def test_two_sqlite_storages_on_one_file_serialise_their_writes(tmp_path: Path) -> None:
    # Two Storage objects stand for two server processes (workers > 1): both write through the shared
    # <database>.write-lock and every event of both is stored.
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = migrated(url)
    second = Storage(url)
    first.create_enroll_secret("s", "default", 2, None, 0)
    first.enroll("s", "dev1", "t1", {}, 0)
    second.enroll("s", "dev2", "t2", {}, 0)

    def send(storage: Storage, device: str) -> None:
        for start in range(1, 400, 20):
            storage.ingest(device, rows(*range(start, start + 20), prefix=device), 1)

    threads = [threading.Thread(target=send, args=a) for a in ((first, "dev1"), (second, "dev2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert first.count_events("dev1") == second.count_events("dev2") == 400
    assert (tmp_path / "s.db.write-lock").exists()
    first.dispose()
    second.dispose()


def findings(*items: tuple[int, str, str, str]) -> tuple[list[EventRow], dict[str, dict[str, str]]]:
    """(sequence, check, status, mode) -> rows and their facts (the data ingest parsed)."""
    batch = rows(*(seq for seq, *_ in items), prefix="f")
    facts = {
        f"f{seq}": {"check_id": check, "status": status, "mode": mode} for seq, check, status, mode in items
    }
    return batch, facts


def test_after_insert_hooks_see_only_new_rows_and_the_failing_list_spans_batches(store: Storage) -> None:
    from core.clock import FakeClock
    from server.alert_store import alert_checks, alerts
    from server.app import create_app
    from server.settings import Settings
    from server.storage import device_checks, devices

    store.create_enroll_secret("s", "default", 1, None, 0)
    store.enroll("s", "dev1", "t", {}, 0)
    seen: list[list[str]] = []
    create_app(Settings(db_url=store.url), store, FakeClock())
    create_app(Settings(db_url=store.url), store, FakeClock())  # a second app: the hooks once, not twice
    assert len(store.after_insert) == 2
    store.after_insert = (*store.after_insert, lambda _c, _d, new, _n, _f: seen.append([r.uid for r in new]))

    def state() -> tuple[str | None, str | None, int, int]:
        with store.engine.connect() as conn:
            device = conn.execute(sa.select(devices.c.state, devices.c.failing)).one()
            checks = conn.execute(sa.select(sa.func.count()).select_from(device_checks)).scalar_one()
            raised = conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one()
        return device.state, device.failing, checks, raised

    batch, facts = findings((1, "vpn", "fail", "block"), (2, "wifi", "fail", "monitor"))
    assert store.ingest("dev1", batch, 10, facts) == (2, 0)
    # the console counts enforced failures only; the alert rules every failing check (wifi under monitor too)
    assert state() == ("non_compliant", '["vpn"]', 2, 2)
    # another check fails in a later batch: the list holds both, though the batch names only one
    batch, facts = findings((3, "tls", "fail", "warn"))
    assert store.ingest("dev1", batch, 11, facts) == (1, 0)
    assert state() == ("non_compliant", '["tls", "vpn"]', 3, 3)
    # resent with one new event: the hooks see the new one only (no second alert for tls)
    batch, facts = findings((3, "tls", "fail", "warn"), (4, "vpn", "pass", "block"))
    assert store.ingest("dev1", batch, 12, facts) == (1, 1)
    assert state() == ("non_compliant", '["tls"]', 3, 3)
    batch, facts = findings((5, "tls", "pass", "warn"))
    assert store.ingest("dev1", batch, 13, facts) == (1, 0)
    assert state() == ("online", "[]", 3, 3)
    assert seen == [["f1", "f2"], ["f3"], ["f4"], ["f5"]]
    with store.engine.connect() as conn:
        still = conn.execute(sa.select(alert_checks.c.check_id)).scalars().all()
    assert still == ["wifi"]


def test_sqlite_group_commit_stores_waiting_batches_in_one_transaction_each_answered_alone(
    tmp_path: Path,
) -> None:
    import time

    store = migrated(f"sqlite:///{tmp_path / 'g.db'}")
    for d in ("dev1", "dev2", "bad"):
        store.create_enroll_secret(f"s-{d}", "default", 1, None, 0)
        store.enroll(f"s-{d}", d, f"t-{d}", {}, 0)

    def refuse_bad(_c: object, device_id: str, _rows: object, _now: int, _facts: object) -> None:
        if device_id == "bad":
            raise RuntimeError("hook failed")

    store.after_insert = (refuse_bad,)
    commits: list[int] = []
    sa.event.listen(store.engine, "commit", lambda _conn: commits.append(1))
    batches = {
        "a": ("dev1", rows(1, 2, 3, prefix="a")),
        "b": ("dev1", rows(3, 4, prefix="a")),  # the same device again, one duplicate of "a"
        "c": ("dev2", rows(1, 5, prefix="c")),  # a gap 2..4
        "d": ("bad", rows(1, prefix="d")),
    }
    results: dict[str, object] = {}

    def send(name: str) -> None:
        device, batch = batches[name]
        try:
            results[name] = store.ingest(device, batch, 7)
        except RuntimeError as err:
            results[name] = str(err)

    assert store._write_lock is not None
    with store._write_lock:  # a writer busy: the four batches queue up behind it
        threads = []
        for name in batches:
            threads.append(threading.Thread(target=send, args=(name,)))
            threads[-1].start()
            deadline = time.monotonic() + 10
            while len(store._pending) < len(threads) and time.monotonic() < deadline:
                time.sleep(0.001)  # queued in this order, so "b" follows "a"
        assert len(store._pending) == 4
    for t in threads:
        t.join(10)
    assert results == {"a": (3, 0), "b": (1, 1), "c": (2, 0), "d": "hook failed"}
    assert len(commits) == 1  # one transaction for the four
    assert store.count_events() == 6 and store.count_events("bad") == 0
    assert [(g.first, g.last) for g in store.gaps_of("dev2")] == [(2, 4)]
    assert store.gaps_of("dev1") == []
    with store.engine.connect() as conn:
        marks = dict(conn.execute(sa.select(devices_table.c.id, devices_table.c.max_sequence)).all())
    assert marks == {"dev1": 4, "dev2": 5, "bad": 0}
    store.dispose()
