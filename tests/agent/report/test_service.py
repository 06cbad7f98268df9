"""The reporting service end to end against the real server on a real uvicorn: delivery, "what is reported",
privacy (no window title or typed text reaches the outbox or the server), heartbeats, clean stop, policy pull,
and `mamori agent enroll`."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.cli import main
from agent.config import AgentConfig
from agent.platform.base import Rect, Window
from agent.policy_source import PolicySource
from agent.report.enrollment import enroll
from agent.report.service import ReportingService
from agent.report.stream import AgentEvent, EventStream, Kind
from agent.report.transport import HttpClient
from core.clock import SystemClock
from policy.store import TrustedStore
from server.settings import Settings
from server.storage import Storage
from tests.harness.live_server import (
    ThreadServer,
    admin_token,
    enroll_secret,
    migrated,
    signed_policy,
    signing_key,
)
from tests.harness.policies import write_agent_config

TITLE = "顧客カルテ 山田太郎 様 090-1234-5678 - CRM"
TYPED = "Dear Mr. Yamada, my password is Hunter2!"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Any, Path]:
    return signing_key(tmp_path / "keys")


@pytest.fixture
def server_db(tmp_path: Path) -> Iterator[tuple[Storage, str]]:
    url = f"sqlite:///{tmp_path / 'server' / 'server.db'}"
    (tmp_path / "server").mkdir()
    storage = migrated(url)
    yield storage, url
    storage.dispose()


@pytest.fixture
def live(server_db: tuple[Storage, str], keys: tuple[Any, Path]) -> Iterator[ThreadServer]:
    storage, url = server_db
    with ThreadServer(Settings(db_url=url, trusted_keys=(keys[1],)), storage) as srv:
        yield srv


def agent_config(tmp_path: Path, pub: Path) -> AgentConfig:
    return AgentConfig(state_dir=tmp_path / "agent", trusted_keys=(pub,))


def admin_get(live: ThreadServer, storage: Storage, path: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {admin_token(storage)}"}
    return requests.get(live.url + path, params=params, headers=headers, timeout=10).json()


def all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def test_events_reach_the_server_exactly_as_shown_to_the_worker(
    tmp_path: Path, live: ThreadServer, server_db: tuple[Storage, str], keys: tuple[Any, Path]
) -> None:
    storage, _ = server_db
    config = agent_config(tmp_path, keys[1])
    enroll(live.url, enroll_secret(storage), config.state_dir, insecure_http=True)
    stream = EventStream()
    clock = SystemClock()
    service = ReportingService(config, stream, clock, batch_delay=0.1, policy_interval=3600)
    service.start()
    for i in range(30):
        stream.publish(
            AgentEvent(Kind.VPN_DOWN if i % 2 else Kind.VPN_UP, clock.now(), {"interface": "tun0"})
        )
    assert service.flush(20)
    sent = service.recent_sent()
    stored = admin_get(live, storage, "/v1/admin/events", limit=1000)["events"]
    by_uid = {e["metadata"]["uid"]: e for e in stored}
    assert len(sent) == 30 and all(by_uid[e["metadata"]["uid"]] == e for e in sent)
    assert sorted(e["metadata"]["sequence"] for e in stored) == list(range(1, 31))
    service.stop()
    device = admin_get(live, storage, "/v1/admin/devices")["devices"][0]
    assert device["status"] == "stopped" and device["gaps"] == 0


@pytest.mark.parametrize("titles", ["none", "hashed"])
def test_no_window_title_or_typed_text_reaches_outbox_or_server(
    titles: str, tmp_path: Path, live: ThreadServer, server_db: tuple[Storage, str], keys: tuple[Any, Path]
) -> None:
    storage, server_url = server_db
    private, pub = keys
    config = agent_config(tmp_path, pub)
    bundle = signed_policy(private, 1, titles=titles)
    TrustedStore(config.state_dir).apply(
        bundle, __import__("policy.keys").keys.load_trusted_keys([pub]), SystemClock().now()
    )
    policy = TrustedStore(config.state_dir).current()
    assert policy is not None
    window = Window(1, TITLE, 4711, "crm.exe", Rect(0, 0, 800, 600))
    from agent.decide.match import rule_matches

    assert rule_matches(policy.policy.customer_apps[0], window)  # the policy does match this title

    enroll(live.url, enroll_secret(storage), config.state_dir, insecure_http=True)
    stream = EventStream()
    clock = SystemClock()
    service = ReportingService(config, stream, clock, batch_delay=0.1, policy_interval=3600)
    service.start()
    # A careless producer hands over everything it knows about the window and the keyboard.
    leaky: dict[str, Any] = {
        "reason": "away",
        "rules": ["crm", TITLE],
        "count": 1,
        "title": TITLE,
        "window": repr(window),
        "typed": TYPED,
        "keystrokes": list(TYPED),
        "command_line": f"crm.exe --open '{TITLE}'",
    }
    stream.publish(AgentEvent(Kind.PROTECTION_APPLIED, clock.now(), leaky))
    stream.publish(AgentEvent(Kind.LOCK_FAILED, clock.now(), {"method": TITLE, "reason": TYPED}))
    stream.publish(
        AgentEvent(Kind.POSTURE_FINDING, clock.now(), {"check_id": TYPED, "status": "fail", "text": TITLE})
    )
    stream.publish(AgentEvent(Kind.SHARE_STARTED, clock.now(), {"app": TITLE}))
    # Before upload: the outbox on disk (database and WAL) holds none of it.
    taken = list(iter_queue(service))
    service._persist(taken)
    for _ in taken:
        service._queue.task_done()
    outbox_bytes = all_bytes(config.state_dir)
    assert service.flush(20)
    server_bytes = all_bytes(Path(server_url.removeprefix("sqlite:///")).parent)
    stored = admin_get(live, storage, "/v1/admin/events", limit=100)["events"]
    shown = json.dumps(service.recent_sent(), ensure_ascii=False).encode()
    for blob in (outbox_bytes, server_bytes, shown, json.dumps(stored, ensure_ascii=False).encode()):
        for secret in ("山田太郎", "090-1234-5678", TYPED, "Hunter2", "Yamada", "顧客カルテ"):
            assert secret.encode() not in blob
    protection = next(e for e in stored if e["metadata"]["event_code"] == "protection.applied")
    assert protection["unmapped"]["rules"] == ["crm"]  # named by its rule
    assert ("title_hash" in protection["unmapped"]) == (titles == "hashed")
    service.stop()


def iter_queue(service: ReportingService) -> Iterator[AgentEvent]:
    while not service._queue.empty():
        yield service._queue.get_nowait()


def test_heartbeats_checkins_and_policy_pull(
    tmp_path: Path, live: ThreadServer, server_db: tuple[Storage, str], keys: tuple[Any, Path]
) -> None:
    storage, _ = server_db
    private, pub = keys
    admin = {"Authorization": f"Bearer {admin_token(storage)}"}
    published = requests.post(
        live.url + "/v1/admin/policies", data=signed_policy(private, 3), headers=admin, timeout=10
    )
    assert published.status_code == 201
    config = agent_config(tmp_path, pub)
    enroll(live.url, enroll_secret(storage), config.state_dir, insecure_http=True)
    stream = EventStream()
    service = ReportingService(
        config, stream, SystemClock(), batch_delay=0.1, heartbeat=0.3, policy_interval=3600
    )
    service.start()
    stream.publish(
        AgentEvent(
            Kind.POSTURE_FINDING,
            SystemClock().now(),
            {"check_id": "network.vpn", "status": "fail", "mode": "block"},
        )
    )
    import time

    deadline = time.monotonic() + 20
    codes: set[str] = set()
    while time.monotonic() < deadline and not {"heartbeat", "policy.applied"} <= codes:
        time.sleep(0.2)
        events = requests.get(live.url + "/v1/admin/events", headers=admin, timeout=10).json()["events"]
        codes = {e["metadata"]["event_code"] for e in events}
    assert {"heartbeat", "policy.applied", "posture.finding"} <= codes
    current = TrustedStore(config.state_dir).current()
    assert current is not None and current.version == 3  # pulled through the trusted store
    device: dict[str, Any] = {}
    while time.monotonic() < deadline and device.get("status") != "non_compliant":
        time.sleep(0.2)  # the next checkin carries the state summary
        device = requests.get(live.url + "/v1/admin/devices", headers=admin, timeout=10).json()["devices"][0]
    assert device["status"] == "non_compliant" and device["failing"] == ["network.vpn"]
    assert device["policy_version"] == 3
    service.stop()


def test_policy_fetch_uses_etag_and_rejects_untrusted_bundles(
    tmp_path: Path, live: ThreadServer, server_db: tuple[Storage, str], keys: tuple[Any, Path]
) -> None:
    from agent.report.enrollment import load_enrollment
    from agent.report.uploader import PolicyFetcher
    from policy.errors import UnknownKeyError

    storage, _ = server_db
    private, pub = keys
    admin = {"Authorization": f"Bearer {admin_token(storage)}"}
    requests.post(live.url + "/v1/admin/policies", data=signed_policy(private, 1), headers=admin, timeout=10)
    state = tmp_path / "agent"
    enroll(live.url, enroll_secret(storage), state, insecure_http=True)
    enrollment = load_enrollment(state)
    assert enrollment is not None
    session = HttpClient(None)  # the agent's client (agent/report/transport.py)
    fetcher = PolicyFetcher(
        session, state, PolicySource(AgentConfig(state_dir=state, trusted_keys=(pub,)), SystemClock()).apply
    )
    first = fetcher.refresh(enrollment)
    assert first is not None and first.accepted and first.policy.version == 1
    assert fetcher.refresh(enrollment) is None  # 304
    _other_private, other_pub = signing_key(tmp_path / "other")
    stranger = tmp_path / "stranger"
    enroll(live.url, enroll_secret(storage), stranger, insecure_http=True)
    strange = load_enrollment(stranger)
    assert strange is not None
    wary = PolicyFetcher(
        session,
        stranger,
        PolicySource(AgentConfig(state_dir=stranger, trusted_keys=(other_pub,)), SystemClock()).apply,
    )
    with pytest.raises(UnknownKeyError):
        wary.refresh(strange)
    assert TrustedStore(stranger).current() is None
    assert wary.refresh(strange) is None  # the same bad bundle is not re-reported


def test_agent_enroll_command(
    tmp_path: Path, live: ThreadServer, server_db: tuple[Storage, str], capsys: pytest.CaptureFixture[str]
) -> None:
    storage, _ = server_db
    state = tmp_path / "state"
    config = write_agent_config(tmp_path, state_dir=state)
    secret = enroll_secret(storage)
    assert (
        main(
            [
                "agent",
                "enroll",
                "--insecure-http",
                "--server",
                live.url,
                "--secret",
                secret,
                "--config",
                str(config),
            ]
        )
        == 0
    )
    saved = state / "enrollment.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    doc = json.loads(saved.read_text())
    assert doc["token"].startswith("mdt_") and doc["device_id"] in capsys.readouterr().out
    assert (
        main(
            [
                "agent",
                "enroll",
                "--insecure-http",
                "--server",
                live.url,
                "--secret",
                secret,
                "--config",
                str(config),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("mamori: enrollment refused") and "used up" in err and len(err.splitlines()) == 1


def test_a_tiny_outbox_keeps_findings_and_the_server_gets_the_gap_counts(
    tmp_path: Path, live: ThreadServer, server_db: tuple[Storage, str]
) -> None:
    from policy.model import Policy, Reporting

    storage, _ = server_db
    config = AgentConfig(state_dir=tmp_path / "agent")
    tiny = Policy(schema=1, id="tiny", version=1, reporting=Reporting(outbox_max_events=10))
    stream = EventStream()
    clock = SystemClock()
    service = ReportingService(
        config, stream, clock, batch_delay=0.1, heartbeat=1e9, policy=PolicySource(config, clock, fixed=tiny)
    )
    service.start()
    published = {"heartbeat": 30, "posture.finding": 5, "vpn.up": 10}
    for i in range(30):  # offline (not enrolled yet): everything piles up in the outbox
        stream.publish(AgentEvent(Kind.HEARTBEAT, clock.now(), {"state": "online"}))
        if i % 6 == 0:
            finding = {
                "check_id": f"device.check{i}",
                "status": "fail",
                "mode": "block",
                "enforcement": "block",
            }
            stream.publish(AgentEvent(Kind.POSTURE_FINDING, clock.now(), finding))
        if i % 3 == 0:
            stream.publish(AgentEvent(Kind.VPN_UP, clock.now(), {"interface": "wg0"}))
    import time

    deadline = time.monotonic() + 10
    while service.outbox.last_sequence() < 45 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.outbox.pending_count() <= 10
    enroll(live.url, enroll_secret(storage), config.state_dir, insecure_http=True)
    assert service.flush(20)
    service.stop()
    stored = admin_get(live, storage, "/v1/admin/events", limit=1000)["events"]
    kinds = [e["metadata"]["event_code"] for e in stored]
    assert kinds.count("posture.finding") == 5  # every security finding survived
    assert kinds.count("heartbeat") < 30
    gaps = [e["unmapped"] for e in stored if e["metadata"]["event_code"] == "report.gap"]
    assert gaps
    for kind, count in published.items():
        lost = sum(g["dropped"].get(kind, 0) + g["coalesced"].get(kind, 0) for g in gaps)
        assert kinds.count(kind) + lost == count, kind
    assert sum(g["coalesced"].get("heartbeat", 0) for g in gaps) > 0
    device = admin_get(live, storage, "/v1/admin/devices")["devices"][0]
    dropped_total = sum(sum(g["dropped"].values()) + sum(g["coalesced"].values()) for g in gaps)
    assert device["missing_events"] == dropped_total  # the server's sequence gaps agree with the gap events


def test_events_the_server_refuses_are_set_aside_and_reported(tmp_path: Path) -> None:
    from agent.report.enrollment import Enrollment, save_enrollment
    from tests.harness.recording_server import RecordingServer

    def refuse_vpn_down(lines: list[dict[str, Any]]) -> tuple[int, dict[str, str], Any]:
        bad = [
            {"index": i, "uid": e["metadata"]["uid"], "reason": "unmapped.interface: value not allowed"}
            for i, e in enumerate(lines)
            if e["metadata"]["event_code"] == "vpn.down"
        ]
        return 200, {}, {"accepted": len(lines) - len(bad), "duplicate": 0, "rejected": bad}

    server = RecordingServer(refuse_vpn_down)
    try:
        config = AgentConfig(state_dir=tmp_path / "agent")
        save_enrollment(config.state_dir, Enrollment(server.url, "dtest", "mdt_x"))
        stream = EventStream()
        service = ReportingService(
            config, stream, SystemClock(), batch_delay=0.05, policy_interval=1e9, heartbeat=1e9
        )
        service.start()
        for kind in (Kind.VPN_UP, Kind.VPN_DOWN, Kind.VPN_UP):
            stream.publish(AgentEvent(kind, SystemClock().now(), {"interface": "wg0"}))
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "report.rejected" not in {
            e["metadata"]["event_code"] for e in server.events
        }:
            time.sleep(0.05)
        assert service.flush(10)
        refused = [e for e in server.events if e["metadata"]["event_code"] == "vpn.down"]
        report = next(e for e in server.events if e["metadata"]["event_code"] == "report.rejected")
        assert report["unmapped"]["count"] == 1
        assert report["unmapped"]["uids"] == [refused[0]["metadata"]["uid"]]
        assert report["unmapped"]["reasons"] == {"unmapped.interface": 1}
        assert [r.kind for r in service.outbox.rejected()] == ["vpn.down"]  # kept locally, never resent
        assert len(refused) == 1
        service.stop()
    finally:
        server.close()


class _ScriptedWaits:
    """Drives ``_upload_cycle`` on a FakeClock: every wait advances the clock by what was asked, and the loop
    stops once ``until`` simulated seconds have passed (or after too many passes: a spinning loop)."""

    def __init__(self, service: ReportingService, clock: Any, until: float, on_time: Any = None) -> None:
        self.service, self.clock, self.until, self.on_time = service, clock, until, on_time
        self.start = clock.monotonic()
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.advance(max(0.0, min(seconds, 5.0)))
        if self.on_time is not None:
            self.on_time(self.clock.monotonic() - self.start)
        if self.clock.monotonic() - self.start >= self.until or len(self.waits) > 10_000:
            self.service._stopping.set()
        return False


def test_without_an_enrollment_every_upload_pass_waits(tmp_path: Path) -> None:
    """An MDM-drop-only agent has no server: the upload thread must sleep, not spin (issue 16)."""
    from core.clock import FakeClock

    clock = FakeClock()
    config = AgentConfig(state_dir=tmp_path / "agent")
    service = ReportingService(config, EventStream(), clock, policy_interval=300, heartbeat=60)
    script = _ScriptedWaits(service, clock, until=600)
    service._wait = script  # type: ignore[method-assign]
    service._upload_cycle()
    assert min(script.waits) >= 1.0, "a pass of the upload loop returned without waiting"
    assert len(script.waits) <= 600 / 5 + 1  # at most one look for an enrollment every MAX_WAIT
    service.outbox.close()


def test_heartbeat_follows_the_policy_applied_after_start(tmp_path: Path) -> None:
    """The first policy arrives after start with a 60 s heartbeat: the first heartbeat comes within 60 s of
    the start, not after the 300 s default that was in force when the loop began (issue 12, item 5)."""
    from agent.report.enrollment import Enrollment, save_enrollment
    from core.clock import FakeClock
    from policy.model import Policy, Reporting
    from tests.harness.recording_server import RecordingServer

    class LatePolicy(PolicySource):
        policy: Policy | None = None

        def current(self) -> Policy | None:
            return self.policy

    server = RecordingServer()
    try:
        clock = FakeClock()
        config = AgentConfig(state_dir=tmp_path / "agent")
        save_enrollment(config.state_dir, Enrollment(server.url, "dtest", "mdt_x"))
        stream = EventStream()
        source = LatePolicy(config, clock, stream)
        service = ReportingService(config, stream, clock, policy_interval=1e9, policy=source)
        heartbeats: list[float] = []
        sub = stream.subscribe()

        def on_time(elapsed: float) -> None:
            if source.policy is None and elapsed >= 10:
                source.policy = Policy(schema=1, id="p", version=1, reporting=Reporting(heartbeat=60.0))
                service.reload_policy()
            while not sub.empty():
                if sub.get_nowait().kind == Kind.HEARTBEAT:
                    heartbeats.append(elapsed)

        script = _ScriptedWaits(service, clock, until=200, on_time=on_time)
        service._wait = script  # type: ignore[method-assign]
        service._upload_cycle()
        assert heartbeats, "no heartbeat in 200 s under a 60 s heartbeat policy"
        assert heartbeats[0] <= 60.0 + 5.0
        assert len(heartbeats) >= 3  # then every 60 s
        service.outbox.close()
    finally:
        server.close()
