"""Every event kind the agent emits, produced by the real reporting pieces (privacy filter, SQLite outbox with
its gap accounting, uploader, rejection report) and received by the real server on a real uvicorn, is valid
OCSF of the release it claims, checked against the official compiled schema (core/ocsf_schema)."""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.config import AgentConfig
from agent.report.enrollment import enroll
from agent.report.events import build_record, rule_context
from agent.report.service import ReportingService
from agent.report.stream import AgentEvent, EventStream, Kind
from core import ocsf
from core.clock import SystemClock
from core.records import OCSF_VERSION
from server.settings import Settings
from server.storage import Storage
from tests.harness.live_server import ThreadServer, admin_token, enroll_secret, migrated, signing_key

# What each producer publishes (agent/protection.py, lock.py, posture/monitor.py, share/guard.py, degraded.py,
# policy_source.py, ui/ack.py, report/summary.py, clipboard/guard.py); report.gap and report.rejected come from agent/report itself.
PRODUCED: dict[Kind, list[dict[str, Any]]] = {
    Kind.PRESENCE_STAGE: [{"stage": "protect", "previous": "warn"}, {"stage": "active", "previous": None}],
    Kind.PROTECTION_APPLIED: [
        {"reason": "away", "rules": ["crm"], "count": 1},
        {"reason": "onlooker", "rules": ["crm"], "count": 1},
    ],
    Kind.PROTECTION_REMOVED: [{"reason": "share", "rules": ["crm"], "count": 2}],
    Kind.SESSION_LOCKED: [{"method": "logind"}],
    Kind.SESSION_UNLOCKED: [{}],
    Kind.LOCK_FAILED: [{"method": "xdg-screensaver", "reason": "not_locked"}],
    Kind.POSTURE_FINDING: [
        {"check_id": c, "status": s, "previous": p, "mode": m, "enforcement": e}
        for c, s, p, m, e in (
            ("vpn", "fail", "pass", "block", "block"),
            ("vpn.routes", "pass", "fail", "block", "none"),
            ("wifi", "error", None, "warn", "warn"),
            ("tls:intranet", "skip", None, "report", "none"),
            ("device.disk_encryption", "fail", None, "report", "none"),
        )
    ],
    Kind.VPN_UP: [{"interface": "tun0"}],
    Kind.VPN_DOWN: [{"interface": "tun0"}],
    Kind.SHARE_STARTED: [{"app": "Zoom"}],
    Kind.SHARE_ENDED: [{"app": "Zoom", "duration_s": 312.5}],
    Kind.SHARE_SELFCHECK_FAILED: [{"rules": ["crm"], "count": 1}],
    Kind.CLIPBOARD_CLEARED: [
        {"selection": "clipboard", "reason": "step_away", "rules": ["crm"], "action": "notice"},
        {"selection": "primary", "reason": "share", "rules": ["crm"], "action": "clear"},
    ],
    Kind.ONLOOKER_STARTED: [{"mode": "cover", "frame_rate": 2}],
    Kind.ONLOOKER_DETECTED: [{"faces": 2, "allowed": 1, "mode": "cover"}],
    Kind.ONLOOKER_CLEARED: [{"faces": 3, "allowed": 1, "mode": "report", "duration_s": 4.5}],
    Kind.CAPABILITY_DEGRADED: [{"capability": "window_list", "reason": "wayland"}],
    Kind.PROTECTION_PAUSED: [{"reason_code": "presentation", "minutes": 15}],
    Kind.PROTECTION_RESUMED: [{}],
    Kind.AGENT_STARTED: [{}],
    Kind.AGENT_STOPPED: [{}],
    Kind.POLICY_APPLIED: [{"policy_id": "acme-telework", "version": 3}],
    Kind.POLICY_REJECTED: [{"policy_id": "acme-telework", "version": 2, "reason": "rollback"}],
    Kind.POLICY_ACKNOWLEDGED: [{"policy_id": "acme-telework", "version": 3}],
    Kind.HEARTBEAT: [
        {
            "state": "non_compliant",
            "stage": "active",
            "failing": ["vpn"],
            "policy_id": "acme-telework",
            "policy_version": 3,
            "uptime_s": 3600.0,
        }
    ],
}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ThreadServer, Storage]]:
    storage = migrated(f"sqlite:///{tmp_path / 'server.db'}")
    with ThreadServer(Settings(db_url=str(storage.engine.url)), storage) as srv:
        yield srv, storage
    storage.dispose()


def shipped_schema() -> ocsf.Schema:
    raw = resources.files("core").joinpath("ocsf_schema", f"{OCSF_VERSION}.json.gz").read_bytes()
    return ocsf.Schema.from_compiled(json.loads(gzip.decompress(raw)))


def test_every_kind_the_agent_emits_is_valid_ocsf_of_the_claimed_release(
    tmp_path: Path, live: tuple[ThreadServer, Storage]
) -> None:
    server, storage = live
    _, pub = signing_key(tmp_path / "keys")
    config = AgentConfig(state_dir=tmp_path / "agent", trusted_keys=(pub,))
    enroll(server.url, enroll_secret(storage), config.state_dir, insecure_http=True)
    stream = EventStream()
    clock = SystemClock()
    service = ReportingService(config, stream, clock, batch_delay=0.05, policy_interval=3600)
    # A full outbox drops telemetry and counts it: report.gap.
    service.outbox.set_bounds(10, 10**7)  # its smallest bound
    heartbeat = PRODUCED[Kind.HEARTBEAT][0]
    for _ in range(15):
        service.outbox.put([build_record(AgentEvent(Kind.HEARTBEAT, clock.now(), heartbeat), rule_context())])
    service.outbox.set_bounds(10_000, 10**8)
    # A record the server refuses (a producer bug that slipped past the filter): report.rejected.
    broken = build_record(AgentEvent(Kind.SHARE_STARTED, clock.now(), {"app": "Zoom"}), rule_context())
    broken["unmapped"]["app"] = "x" * 65
    service.outbox.put([broken])
    service.start()
    try:
        for kind, variants in PRODUCED.items():
            for data in variants:
                stream.publish(AgentEvent(kind, clock.now(), data))
        admin = {"Authorization": f"Bearer {admin_token(storage)}"}
        deadline = time.monotonic() + 30
        received: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert service.flush(10)
            response = requests.get(server.url + "/v1/admin/events/export", headers=admin, timeout=10)
            received = [json.loads(line) for line in response.text.splitlines()]
            if {e["metadata"]["event_code"] for e in received} >= {k.value for k in Kind}:
                break
            time.sleep(0.1)
    finally:
        service.stop()
    codes = Counter(e["metadata"]["event_code"] for e in received)
    assert set(codes) == {k.value for k in Kind}, (
        f"not emitted: {sorted({k.value for k in Kind} - set(codes))}"
    )
    schema = shipped_schema()
    assert schema.version == OCSF_VERSION == "1.8.0"
    for event in received:
        assert event["metadata"]["version"] == OCSF_VERSION
        assert ocsf.conformance(event, schema) == [], event
    by_class = Counter(e["class_uid"] for e in received)
    assert set(by_class) == {2003, 3002, 4014, 5019}
    print(f"OCSF {OCSF_VERSION}: {len(received)} events valid, by class {dict(sorted(by_class.items()))}")
    # The specific attributes OCSF requires, filled from fixed vocabularies.
    finding = next(e for e in received if e["metadata"]["event_code"] == "posture.finding")
    assert finding["compliance"]["standards"][0] == "Mamori endpoint policy"
    lock = next(e for e in received if e["metadata"]["event_code"] == "session.locked")
    assert lock["user"]["uid"].startswith("u-") and lock["service"] == {"name": "desktop-session"}
    assert all(e["metadata"]["profiles"] == ["host"] and "type_id" in e["device"] for e in received)
