"""Storage and migrations on SQLite and the real PostgreSQL: the migrated schema is the one the code queries,
ingest is idempotent and transactional, enrollment secrets cannot be over-used under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server import migrate
from server.storage import EnrollRefusedError, EventRow, Storage, metadata
from tests.server.live import migrated, pg_url, reset_pg


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 's.db'}"
    else:
        url = pg_url()
        reset_pg(url)
    storage = migrated(url)
    yield storage
    storage.dispose()


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
