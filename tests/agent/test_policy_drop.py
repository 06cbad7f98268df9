"""The MDM/GPO policy drop (agent.policy_drop) and the posture follower, with real keys, store and monitor."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.policy_drop import PolicyDropWatcher
from agent.policy_source import PolicySource
from agent.posture.base import NetInterface
from agent.posture.fake import FakeHost
from agent.posture.follower import PostureFollower
from agent.report.stream import EventStream, Kind
from core.clock import FakeClock
from policy.load import load_policy
from policy.model import Policy
from policy.store import TrustedStore
from tests.harness.policies import PolicyKeys, policy_keys, policy_toml


def drop_policy(version: int) -> str:
    return policy_toml(policy_id="drop-test", version=version, vpn="block", enforcement={"grace": "0s"})


def _setup(tmp_path: Path) -> tuple[AgentConfig, PolicyKeys, Path]:
    keys = policy_keys(tmp_path)
    drop = tmp_path / "policy.dsse.json"
    config = AgentConfig(state_dir=tmp_path / "state", trusted_keys=(keys.public_path,), policy_bundle=drop)
    return config, keys, drop


def _bundle(keys: PolicyKeys, version: int) -> bytes:
    return keys.sign(drop_policy(version))


def test_drop_is_applied_once_and_a_bad_drop_keeps_the_last_good_policy(tmp_path: Path) -> None:
    config, key, drop = _setup(tmp_path)
    stream = EventStream()
    events = stream.subscribe()
    watcher = PolicyDropWatcher(drop, PolicySource(config, FakeClock(), stream))
    store = TrustedStore(config.state_dir)

    assert watcher.check_once() is None  # nothing dropped yet
    drop.write_bytes(_bundle(key, 3))
    assert watcher.check_once() == "accepted"
    applied = events.get_nowait()
    assert applied.kind is Kind.POLICY_APPLIED and dict(applied.data) == {
        "policy_id": "drop-test",
        "version": 3,
    }
    assert watcher.check_once() is None  # same file: not re-read

    # An attacker (or a broken MDM push) replaces the file with a tampered bundle.
    tampered = _bundle(key, 4).replace(b'"sig":"', b'"sig":"AAAA', 1)
    drop.write_bytes(tampered)
    reason = watcher.check_once()
    assert reason in ("malformed", "bad_signature")
    rejected = events.get_nowait()
    assert rejected.kind is Kind.POLICY_REJECTED and rejected.data == {"reason": reason}
    current = store.current()
    assert current is not None and current.version == 3

    # A rollback to an older signed version is refused too.
    drop.write_bytes(_bundle(key, 2))
    assert watcher.check_once() == "rollback"
    assert events.get_nowait().data["reason"] == "rollback"

    drop.write_bytes(_bundle(key, 5))
    assert watcher.check_once() == "accepted"
    current = store.current()
    assert current is not None and current.version == 5


def test_drop_signed_by_an_unknown_key_is_rejected(tmp_path: Path) -> None:
    config, _key, drop = _setup(tmp_path)
    stream = EventStream()
    events = stream.subscribe()
    drop.write_bytes(_bundle(policy_keys(tmp_path / "stranger"), 1))
    assert PolicyDropWatcher(drop, PolicySource(config, FakeClock(), stream)).check_once() == "unknown_key"
    assert events.get_nowait().data == {"reason": "unknown_key"}
    assert TrustedStore(config.state_dir).current() is None


class RecordingHost:
    """The runtime's API as the follower uses it, recording the cover reasons it is given."""

    def __init__(self, policy: Policy | None) -> None:
        self.current = policy
        self.reasons: list[tuple[str, bool, str | None]] = []
        self.changed = threading.Event()

    def policy(self) -> Policy | None:
        return self.current

    def set_cover_reason(self, source: str, active: bool, message_key: str | None = None) -> None:
        self.reasons.append((source, active, message_key))
        self.changed.set()

    def add_worker(self, name: str, target: Callable[[threading.Event], None]) -> None:
        raise AssertionError("not used")

    def add_status_provider(self, name: str, provider: Callable[[], object]) -> None:
        raise AssertionError("not used")


class NoWatcher:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change

    def stop(self) -> None:
        pass


def test_posture_follower_covers_while_the_vpn_check_blocks(tmp_path: Path) -> None:
    host = RecordingHost(None)
    nets = FakeHost(nics=[NetInterface("eth0", True, "ethernet")])
    follower = PostureFollower(host, EventStream(), FakeClock(), probe=nets, watcher_factory=NoWatcher)
    assert follower.status()["checks"] == []  # no policy yet: nothing evaluated, nothing blocked
    stop = threading.Event()
    worker = threading.Thread(target=follower.run, args=(stop,))
    host.current = load_policy(drop_policy(1).encode())
    worker.start()
    try:
        assert host.changed.wait(10)
        source, active, key = host.reasons[-1]
        assert (source, active) == ("posture", True) and key is not None and "vpn" in key
        checks = follower.status()["checks"]
        assert {"id": "vpn", "status": "fail", "mode": "block", "enforcement": "block"} in checks  # type: ignore[operator]
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
    assert follower.status()["checks"] == []


def test_unreadable_trusted_keys_are_logged_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Before the fix a missing trusted key logged a warning on every 2 s poll for as long as it was missing.
    config, key, drop = _setup(tmp_path)
    drop.write_bytes(_bundle(key, 1))
    pub = config.trusted_keys[0]
    pem = pub.read_bytes()
    pub.unlink()
    watcher = PolicyDropWatcher(drop, PolicySource(config, FakeClock(), EventStream()))
    with caplog.at_level(logging.WARNING, logger="agent.policy_drop"):
        for _ in range(5):
            assert watcher.check_once() is None
    assert len([r for r in caplog.records if "policy drop not applied" in r.message]) == 1
    pub.write_bytes(pem)
    assert watcher.check_once() == "accepted"
