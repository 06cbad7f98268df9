from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.clock import FakeClock
from server.app import create_app
from server.settings import Settings
from server.storage import Storage
from tests.harness.live_server import migrated, pg_url, reset_pg


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'server.db'}"


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    s = migrated(db_url)
    yield s
    s.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A migrated database on SQLite and, as a second run of the test, on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 's.db'}"
    else:
        url = pg_url()
        reset_pg(url)
    storage = migrated(url)
    yield storage
    storage.dispose()


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(db_url=db_url)


@pytest.fixture
def client(settings: Settings, storage: Storage, clock: FakeClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, storage, clock)) as c:
        yield c
