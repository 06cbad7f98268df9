"""Retention (server/retention.py): age limits per table, batched deletes, never an event a forwarder has not
delivered; the settings, the CLI and the server's own periodic run. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from core.clock import FakeClock
from server import forward_store
from server.audit import entries, verify
from server.retention import DAY_MS, RetentionService, RetentionSettings, apply_retention
from server.settings import SettingsError, load_settings
from server.storage import Storage, events, gaps
from tests.harness.live_server import migrated

NOW = 1_800_000_000_000


def _event(uid: str, *, age_days: float, received_age_days: float | None = None) -> dict[str, object]:
    at = NOW - int(age_days * DAY_MS)
    received = NOW - int((age_days if received_age_days is None else received_age_days) * DAY_MS)
    return {
        "uid": uid, "device_id": "d1", "sequence": int(uid[1:]), "class_uid": 2003, "type_uid": 200302,
        "severity_id": 3, "event_code": "posture.finding", "time": at, "received_at": received, "body": "{}",
    }  # fmt: skip


def _uids(storage: Storage) -> set[str]:
    with storage.engine.connect() as conn:
        return {row.uid for row in conn.execute(sa.select(events.c.uid))}


def test_old_events_go_in_batches_undelivered_ones_stay(store: Storage) -> None:
    old = [_event(f"e{i}", age_days=500) for i in range(1, 26)]
    young = [_event(f"e{i}", age_days=10) for i in range(100, 105)]
    # the agent's clock said 500 days ago, but the server received it yesterday: not old
    skewed = [_event("e200", age_days=500, received_age_days=1)]
    with store.write() as conn:
        conn.execute(events.insert(), old + young + skewed)
        conn.execute(forward_store.forward_pending.insert(), [{"uid": "e1"}])  # not yet distributed
        conn.execute(
            forward_store.forward_outbox.insert(),
            [
                {"forwarder": "siem", "uid": "e2", "attempts": 3, "next_at": NOW, "dead": False},  # retrying
                {
                    "forwarder": "siem",
                    "uid": "e3",
                    "attempts": 9,
                    "next_at": NOW - 100 * DAY_MS,
                    "dead": True,
                },
            ],
        )
        conn.execute(
            gaps.insert(),
            [
                {"device_id": "d1", "first_seq": 5, "last_seq": 6, "detected_at": NOW - 500 * DAY_MS},
                {"device_id": "d1", "first_seq": 8, "last_seq": 8, "detected_at": NOW - 1 * DAY_MS},
            ],
        )
    settings = RetentionSettings(events_days=400, gaps_days=400, batch=4)
    result = apply_retention(store, settings, NOW)
    assert (result.events, result.gaps, result.dead_letters, result.kept_undelivered) == (22, 1, 0, 3)
    assert _uids(store) == {"e1", "e2", "e3", "e200"} | {f"e{i}" for i in range(100, 105)}
    # the dead letter leaves once its own age limit passes; then its event may go too
    result = apply_retention(store, RetentionSettings(events_days=400, dead_letters_days=90), NOW)
    assert (result.events, result.dead_letters, result.kept_undelivered) == (1, 1, 2)
    assert "e3" not in _uids(store)
    # a second run finds nothing more; both runs that deleted are in the audit log, and the chain holds
    assert apply_retention(store, settings, NOW).deleted() == 0
    logged = entries(store, actor="retention")
    assert [e.detail["events"] for e in logged] == [22, 1]
    assert verify(store)[1] is None


def test_nothing_is_deleted_by_default(store: Storage) -> None:
    with store.write() as conn:
        conn.execute(events.insert(), [_event("e1", age_days=5000)])
    assert not RetentionSettings().enabled
    assert apply_retention(store, RetentionSettings(), NOW).deleted() == 0
    assert _uids(store) == {"e1"}


def test_settings_and_their_errors(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("[retention]\nevents_days = 400\nbatch = 1000\n")
    settings = load_settings(config).retention
    assert (settings.events_days, settings.batch, settings.gaps_days) == (400, 1000, 0)
    for bad, says in (
        ("[retention]\nevents_day = 400\n", "unknown key(s) events_day"),
        ("[retention]\nevents_days = -1\n", "events_days must be a whole number"),
        ("[retention]\nevents_days = '400d'\n", "events_days must be a whole number"),
        ("[retention]\nbatch = 0\n", "batch must be at least 1"),
        ("retention = 400\n", "[retention] must be a table"),
    ):
        config.write_text(bad)
        with pytest.raises(SettingsError, match=r"server\.toml.*" + says.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):  # fmt: skip
            load_settings(config)


def test_cli_runs_it_once_and_refuses_without_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agent.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    storage = migrated(url)
    with storage.write() as conn:
        conn.execute(events.insert(), [_event("e1", age_days=0)])
        conn.execute(events.insert(), [{**_event("e2", age_days=0), "time": 0, "received_at": 0}])
    storage.dispose()
    config = tmp_path / "server.toml"
    config.write_text(f"db = '{url}'\n")
    assert main(["server", "retention", "--config", str(config)]) == 2
    assert "no [retention] age limit" in capsys.readouterr().err
    config.write_text(f"db = '{url}'\n[retention]\nevents_days = 30\n")
    assert main(["server", "retention", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 1
    assert _uids(migrated(url)) == {"e1"}


def test_the_server_process_runs_it_periodically(store: Storage) -> None:
    with store.write() as conn:
        conn.execute(events.insert(), [_event("e1", age_days=50), _event("e2", age_days=1)])
    clock = FakeClock(start=datetime.fromtimestamp(NOW / 1000, UTC))
    service = RetentionService(store, RetentionSettings(events_days=30, interval_s=1), clock)
    service.start()
    try:
        deadline = time.monotonic() + 10
        while _uids(store) != {"e2"}:
            assert time.monotonic() < deadline, "the periodic run did not delete the old event within 10 s"
            time.sleep(0.05)
    finally:
        service.stop()
