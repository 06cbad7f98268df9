"""An export page costs the same wherever its cursor is: the page query starts the index on time at the cursor
instead of scanning the window from its start and filtering out everything exported before (which made a
100 000-event export read 5 million rows; benchmarks/scale_bench.py)."""

from __future__ import annotations

import sqlite3
from itertools import islice
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from server.export import Cursor, ExportQuery, iter_events, page_end
from server.storage import Storage
from tests.harness.live_server import migrated
from tests.server.test_export import BASE_MS, fill

EVENTS = 20_000
PAGE = 500


def steps_for_page(storage: Storage, steps: list[int], query: ExportQuery) -> tuple[int, list[Any]]:
    """The SQLite virtual-machine steps (in thousands) that reading one page of ``query`` took, and the page."""
    steps.clear()
    page = list(islice(iter_events(storage, query, page=PAGE), PAGE))
    return len(steps), page


def test_a_late_page_reads_no_more_than_the_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'export.db'}"
    filled = migrated(url)
    fill(filled, "dev-0", EVENTS, time_of=lambda seq: BASE_MS + seq // 3)  # three events a millisecond
    filled.dispose()

    storage = Storage(url)
    steps: list[int] = []

    def step() -> int:
        steps.append(1)
        return 0  # go on

    def count(dbapi: sqlite3.Connection, _record: Any) -> None:
        dbapi.set_progress_handler(step, 1000)

    sa.event.listen(storage.engine, "connect", count)
    try:
        window = ExportQuery(since_ms=BASE_MS, until_ms=BASE_MS + EVENTS)
        first_cost, first = steps_for_page(storage, steps, window)
        late = page_end(storage, window, EVENTS - 2 * PAGE)
        assert late is not None
        late_cost, page = steps_for_page(storage, steps, ExportQuery(BASE_MS, BASE_MS + EVENTS, after=late))
    finally:
        storage.dispose()
    assert [r.time for r in first[:3]] == [BASE_MS] * 2 + [BASE_MS + 1]  # seq 1, 2 in ms 0; 3 in ms 1
    assert len(page) == PAGE and (page[0].time, page[0].uid) > (late.time, late.uid)
    assert Cursor(page[0].time, page[0].uid) != late
    # Before the fix the page 19 000 events in read all of them: ~40 times the first page's steps.
    assert late_cost <= 3 * first_cost + 5, (first_cost, late_cost)
