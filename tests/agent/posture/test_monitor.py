"""PostureMonitor: events on status changes, VPN up/down, warn-then-block over a FakeClock, network triggers."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import ClassVar

from agent.decide.enforcement import EnforcementState
from agent.posture.base import CheckResult, NetInterface
from agent.posture.fake import FakeHost
from agent.posture.monitor import PostureMonitor
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import FakeClock
from policy.load import load_policy
from tests.harness.policies import Check, policy_toml


def monitor_policy(vpn: Check = "block") -> bytes:
    return policy_toml(
        policy_id="monitor-test", vpn=vpn, device={"disk_encryption": "report"}, enforcement={"grace": "2m"}
    ).encode()


POLICY = monitor_policy()

TUN = NetInterface("tun0", True, "tun")
ETH = NetInterface("eth0", True, "ethernet")


class ManualWatcher:
    """A watcher the test fires by hand (the real ones are exercised in tests/agent/posture/test_vpn.py)."""

    instances: ClassVar[list[ManualWatcher]] = []

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.fire = on_change
        self.stopped = False
        ManualWatcher.instances.append(self)

    def stop(self) -> None:
        self.stopped = True


def drain(q: queue.Queue[AgentEvent]) -> list[AgentEvent]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def make(
    host: FakeHost, clock: FakeClock, stream: EventStream
) -> tuple[PostureMonitor, list[tuple[EnforcementState, list[CheckResult]]]]:
    calls: list[tuple[EnforcementState, list[CheckResult]]] = []
    monitor = PostureMonitor(
        load_policy(POLICY),
        clock,
        lambda s, r: calls.append((s, r)),
        stream,
        host=host,
        watcher_factory=ManualWatcher,
    )
    return monitor, calls


def test_events_and_warn_then_block() -> None:
    host = FakeHost(nics=[TUN, ETH])
    clock = FakeClock()
    stream = EventStream()
    q = stream.subscribe()
    monitor, calls = make(host, clock, stream)

    state, results = monitor.evaluate()
    assert [r.id for r in results] == [
        "vpn",
        "wifi",
        "plaintext",
        "device.disk_encryption",
        "device.firewall",
        "device.screen_lock",
    ]
    assert not state.block and len(calls) == 1
    events = drain(q)
    assert [e.kind for e in events if e.kind is Kind.VPN_UP] == [Kind.VPN_UP]
    findings = {e.data["check_id"]: e.data for e in events if e.kind is Kind.POSTURE_FINDING}
    assert findings["vpn"] == {
        "check_id": "vpn",
        "status": "pass",
        "previous": None,
        "mode": "block",
        "enforcement": "none",
    }

    monitor.evaluate()  # nothing changed: no event, no callback
    assert drain(q) == [] and len(calls) == 1

    host.nics = [ETH]  # the VPN drops
    state, _ = monitor.evaluate(("network",))
    assert not state.block and state.warnings == ("vpn",)
    events = drain(q)
    assert [(e.kind, dict(e.data)) for e in events] == [
        (
            Kind.POSTURE_FINDING,
            {"check_id": "vpn", "status": "fail", "previous": "pass", "mode": "block", "enforcement": "warn"},
        ),
        (Kind.VPN_DOWN, {"interface": "tun0"}),
    ]
    assert calls[-1][0].message_key == "posture.remedy.vpn.connect"

    clock.advance(121)  # grace is 2 min
    state, _ = monitor.evaluate(())
    assert state.block and state.blocking == ("vpn",)
    [event] = drain(q)
    assert event.data["enforcement"] == "block" and event.data["previous"] == "fail"

    host.nics = [TUN, ETH]
    state, _ = monitor.evaluate(("network",))
    assert not state.block
    kinds = [e.kind for e in drain(q)]
    assert kinds == [Kind.POSTURE_FINDING, Kind.VPN_UP]


def test_event_data_carries_no_names_or_addresses() -> None:
    host = FakeHost(nics=[ETH])
    stream = EventStream()
    q = stream.subscribe()
    monitor, _ = make(host, FakeClock(), stream)
    monitor.evaluate()
    for event in drain(q):
        assert set(event.data) <= {"check_id", "status", "previous", "mode", "enforcement", "interface"}


def test_network_change_triggers_evaluation_from_the_thread() -> None:
    ManualWatcher.instances.clear()
    host = FakeHost(nics=[TUN])
    changed = threading.Event()
    first = threading.Event()
    seen: list[bool] = []

    def on_change(state: EnforcementState, results: list[CheckResult]) -> None:
        seen.append(any(r.id == "vpn" and r.status == "fail" for r in results))
        first.set()
        if seen[-1]:
            changed.set()

    monitor = PostureMonitor(
        load_policy(POLICY), FakeClock(), on_change, host=host, watcher_factory=ManualWatcher
    )
    monitor.start()
    try:
        assert first.wait(10)
        assert seen == [False]
        [watcher] = ManualWatcher.instances
        host.nics = []
        watcher.fire()
        assert changed.wait(10), "the network change was not evaluated"
    finally:
        monitor.stop()
    assert watcher.stopped


def test_set_policy_drops_results_of_removed_checks() -> None:
    host = FakeHost(nics=[TUN], default_route="tun0")
    with_routes = load_policy(monitor_policy({"mode": "block", "routes": ["10.9.0.0/16"]}))
    monitor = PostureMonitor(
        with_routes, FakeClock(), lambda s, r: None, host=host, watcher_factory=ManualWatcher
    )
    _, results = monitor.evaluate()
    assert "vpn.routes" in [r.id for r in results]
    monitor.set_policy(load_policy(POLICY))
    _, results = monitor.evaluate()
    assert "vpn.routes" not in [r.id for r in results]


def test_event_data_fits_the_report_layer() -> None:
    """Windows interface names and long TLS hosts must pass agent/report/events.py's validators."""
    import re

    from agent.posture.monitor import _event_interface
    from agent.posture.tls import check_id
    from policy.model import TlsEndpoint

    iface = re.compile(r"^[\w.:-][\w .:-]{0,63}$")
    cid = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\[\]-]{0,63}$")
    assert iface.match(_event_interface("Local Area Connection* 12"))
    assert iface.match(_event_interface("vEthernet (WSL)"))
    long_host = "https://" + "a" * 60 + ".corp.example.co.jp:8443/health"
    assert cid.match(check_id(TlsEndpoint(url=long_host)))
    assert check_id(TlsEndpoint(url="https://crm.example.co.jp/")) == "tls:crm.example.co.jp:443"


def test_status_and_run_until() -> None:
    host = FakeHost(nics=[ETH])
    changed = threading.Event()
    monitor = PostureMonitor(
        load_policy(POLICY), FakeClock(), lambda s, r: changed.set(), host=host, watcher_factory=ManualWatcher
    )
    assert monitor.status()["pending"] is True  # nothing evaluated yet
    stop = threading.Event()
    worker = threading.Thread(target=monitor.run_until, args=(stop,))
    worker.start()
    try:
        assert changed.wait(10)
        status = monitor.status()
        assert status["pending"] is False
        assert status["warnings"] == ["vpn"] and status["block"] is False
        checks = {c["id"]: (c["status"], c["enforcement"]) for c in status["checks"]}  # type: ignore[attr-defined]
        assert checks == {
            "vpn": ("fail", "warn"),
            "wifi": ("skip", "none"),
            "plaintext": ("skip", "none"),
            "device.disk_encryption": ("pass", "none"),
            "device.firewall": ("skip", "none"),
            "device.screen_lock": ("skip", "none"),
        }
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()


def test_previous_status_survives_a_policy_update() -> None:
    host = FakeHost(nics=[TUN])
    stream = EventStream()
    q = stream.subscribe()
    monitor, _ = make(host, FakeClock(), stream)
    monitor.evaluate()
    drain(q)
    host.nics = []
    monitor.set_policy(load_policy(POLICY.replace(b"version = 1", b"version = 2")))
    monitor.evaluate()
    [vpn] = [e for e in drain(q) if e.kind is Kind.POSTURE_FINDING]
    assert vpn.data["previous"] == "pass" and vpn.data["status"] == "fail"
