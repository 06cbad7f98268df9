"""The admin audit log on SQLite and the real PostgreSQL: each entry chained to the previous by SHA-256; an entry
edited, deleted or moved in the database is found by `mamori server audit verify` and by the API; concurrent
writers in separate processes never fork the chain; publish and export are recorded with the admin who did
them; the NDJSON export can be checked without Mamori (the formula in docs/server-api.md)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from agent.cli import main
from core.clock import FakeClock
from server import accounts, audit
from server.app import create_app
from server.settings import Settings
from server.storage import Storage
from tests.harness.live_server import ROOT, signed_policy, signing_key


def fill(store: Storage, count: int = 5) -> None:
    for i in range(count):
        audit.record(
            store,
            actor=f"admin{i % 2}",
            action="device.revoke",
            target=f"d{i}",
            detail={"n": i},
            now_ms=1000 + i,
        )


def admin_headers(store: Storage) -> dict[str, str]:
    token, _ = accounts.create_token(
        store, name="auditor", role="viewer", expires_in_ms=None, actor="t", now=0
    )
    return {"Authorization": f"Bearer {token}"}


def test_an_untouched_log_verifies(store: Storage) -> None:
    fill(store)
    assert audit.verify(store) == (5, None)
    head_id, head_hash = audit.head(store)
    assert head_id == 5 and head_hash == audit.entries(store)[-1].hash
    first = audit.entries(store)[0]
    assert first.prev_hash == audit.GENESIS and first.detail == {"n": 0}


@pytest.mark.parametrize(
    ("tamper", "broken_id", "words"),
    [
        ("UPDATE audit_log SET actor = 'someone-else' WHERE id = 3", 3, "content was changed"),
        ("UPDATE audit_log SET detail = '{}' WHERE id = 2", 2, "content was changed"),
        ("UPDATE audit_log SET at = at + 1 WHERE id = 4", 4, "content was changed"),
        ("DELETE FROM audit_log WHERE id = 2", 3, "entry 2 is missing"),
        ("DELETE FROM audit_log WHERE id = 1", 2, "does not follow"),
    ],
)
def test_an_edited_or_deleted_row_is_found_by_the_cli_and_the_api(
    store: Storage,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    tamper: str,
    broken_id: int,
    words: str,
) -> None:
    fill(store)
    with store.engine.begin() as conn:
        conn.execute(sa.text(tamper))
    _checked, broken = audit.verify(store)
    assert broken is not None and broken.id == broken_id and words in broken.reason
    assert main(["server", "audit", "verify", "--db", store.url]) == 1
    err = capsys.readouterr().err
    assert f"audit entry {broken_id}" in err and err.count("\n") == 1
    with TestClient(create_app(Settings(db_url=store.url), store, clock)) as api:
        headers = admin_headers(store)  # itself appended after the damage: the chain stays broken
        chain = api.get("/v1/admin/audit", headers=headers).json()["chain"]
        assert chain["ok"] is False and chain["broken_id"] == broken_id and words in chain["reason"]
        assert api.get("/v1/admin/audit/verify", headers=headers).json()["broken_id"] == broken_id


def test_moved_rows_are_found(store: Storage) -> None:
    fill(store)
    # Swap the contents of entries 2 and 3 (hashes travel with their rows): the order is part of the chain.
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET id = 100 WHERE id = 2"))
        conn.execute(sa.text("UPDATE audit_log SET id = 2 WHERE id = 3"))
        conn.execute(sa.text("UPDATE audit_log SET id = 3 WHERE id = 100"))
    _, broken = audit.verify(store)
    assert broken is not None and broken.id == 2


def test_a_rewritten_chain_is_caught_by_the_head_kept_elsewhere(store: Storage) -> None:
    """Truncating the newest entries leaves a chain that verifies; the head an admin copied does not match."""
    fill(store)
    kept = audit.head(store)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE id = 5"))
    assert audit.verify(store) == (4, None)
    assert audit.head(store) != kept


APPENDER = """
import sys
from server import audit
from server.storage import Storage
storage = Storage(sys.argv[1])
for i in range(int(sys.argv[3])):
    audit.record(storage, actor=sys.argv[2], action="test.append", target=str(i), now_ms=i)
storage.dispose()
"""


def test_concurrent_writers_in_separate_processes_do_not_fork_the_chain(store: Storage) -> None:
    per_process = 60
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, store.url, f"p{n}", str(per_process)], cwd=ROOT)
        for n in range(3)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert audit.verify(store) == (3 * per_process, None)
    entries = audit.entries(store)
    assert len({e.prev_hash for e in entries}) == len(entries)  # no two entries chained to one predecessor
    assert {e.actor for e in entries} == {"p0", "p1", "p2"}


def test_a_publish_whose_audit_entry_cannot_be_written_stores_no_policy(
    store: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from policy.keys import load_trusted_keys
    from server.publish import publish_policy
    from server.storage import policies

    private, pub = signing_key(tmp_path / "keys")
    trusted = tuple(load_trusted_keys((pub,)))

    def full_disk(*_args: object, **_kwargs: object) -> int:
        raise sa.exc.OperationalError("INSERT INTO audit_log", {}, Exception("database or disk is full"))

    monkeypatch.setattr(audit, "append", full_disk)
    with pytest.raises(sa.exc.OperationalError):
        publish_policy(store, trusted, signed_policy(private, 4), "sales", datetime.now(UTC), actor="ops")
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(policies)).scalar_one() == 0
    monkeypatch.undo()
    publish_policy(store, trusted, signed_policy(private, 4), "sales", datetime.now(UTC), actor="ops")
    assert [(e.action, e.actor) for e in audit.entries(store)] == [("policy.publish", "ops")]


def test_publish_and_export_are_recorded_with_the_admin(
    store: Storage, clock: FakeClock, tmp_path: Path
) -> None:
    private, pub = signing_key(tmp_path / "keys")
    settings = Settings(db_url=store.url, trusted_keys=(pub,))
    token, _ = accounts.create_token(store, name="ops", role="admin", expires_in_ms=None, actor="t", now=0)
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings, store, clock)) as api:
        published = api.post(
            "/v1/admin/policies?group=sales", content=signed_policy(private, 3), headers=headers
        )
        assert published.status_code == 201, published.text
        assert api.get("/v1/admin/events/export?format=csv&device=d1", headers=headers).status_code == 200
        exported = api.get("/v1/admin/audit?format=ndjson", headers=headers)
        assert exported.status_code == 200 and exported.headers["content-type"].startswith(
            "application/x-ndjson"
        )
        page = api.get("/v1/admin/audit", params={"actor": "ops"}, headers=headers).json()
    lines = [json.loads(line) for line in exported.text.splitlines()]
    by_action = {e["action"]: e for e in lines}
    assert by_action["policy.publish"]["actor"] == "ops" and by_action["policy.publish"]["target"] == "sales"
    assert by_action["policy.publish"]["detail"]["version"] == 3
    assert by_action["events.export"]["detail"] == {
        "format": "csv",
        "since": None,
        "until": None,
        "device": "d1",
        "class": None,
    }
    assert lines[-1]["action"] == "audit.export"  # an export of the log is itself recorded
    assert page["chain"]["ok"] and [e["actor"] for e in page["entries"]] == ["ops"] * 3


def test_the_export_verifies_without_mamori(
    store: Storage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(store, 3)
    audit.record(
        store,
        actor="山田",
        action="signin",
        detail={"client": "192.0.2.1", "note": "ja テキスト"},
        now_ms=5000,
    )
    out = tmp_path / "audit.ndjson"
    assert main(["server", "audit", "export", "--db", store.url, "--output", str(out)]) == 0
    prev = "0" * 64
    for line in out.read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        # docs/server-api.md: hash = SHA-256(prev_hash + canonical JSON of id, at, actor, action, target, detail)
        content = {
            "id": e["id"],
            "at": e["at"],
            "actor": e["actor"],
            "action": e["action"],
            "target": e["target"],
            "detail": json.dumps(e["detail"], sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert e["prev_hash"] == prev
        assert hashlib.sha256((prev + canonical).encode("utf-8")).hexdigest() == e["hash"]
        prev = e["hash"]
    assert prev == audit.head(store)[1]


def test_the_cli_event_export_is_recorded(
    store: Storage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "events.csv"
    assert (
        main(["server", "export", "--db", store.url, "--format", "csv", "--device", "d9", "-o", str(out)])
        == 0
    )
    (entry,) = audit.entries(store, action="events.export")
    assert (
        entry.actor.startswith("cli") and entry.detail["format"] == "csv" and entry.detail["device"] == "d9"
    )
