"""The GNOME Wayland backend over a scripted fake session bus."""

from __future__ import annotations

from typing import Any

import pytest

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.platform.base import PlatformError
from agent.platform.linux_wayland import DBusCallError, WaylandDesktop
from agent.report.stream import EventStream, Kind
from core.clock import FakeClock
from tests.harness.fakes import RecordingSink, policy


class FakeBus:
    def __init__(self) -> None:
        self.idle_ms = 0
        self.active = False
        self.gnome = True
        self.calls: list[str] = []

    def call(
        self,
        destination: str,
        path: str,
        interface: str,
        method: str,
        *,
        signature: str = "",
        body: tuple[Any, ...] = (),
        timeout: float = 2.0,
    ) -> tuple[Any, ...]:
        self.calls.append(f"{interface}.{method}")
        if not self.gnome:
            raise DBusCallError(interface, method, "org.freedesktop.DBus.Error.ServiceUnknown", destination)
        if method == "GetIdletime":
            return (self.idle_ms,)
        if method == "GetActive":
            return (self.active,)
        if method == "Lock":
            self.active = True
            return ()
        raise AssertionError(method)


def test_idle_lock_state_and_gnome_lock() -> None:
    bus = FakeBus()
    desk = WaylandDesktop(bus=bus, session=None)
    bus.idle_ms = 93_500
    assert desk.idle_seconds() == 93.5
    assert desk.windows() == [] and not desk.is_locked()
    desk.lock()
    assert "org.gnome.ScreenSaver.Lock" in bus.calls and desk.is_locked()
    caps = desk.capabilities()
    assert caps.idle and not caps.window_list and not caps.cover and caps.lock_method == "gnome-screensaver"


def test_not_gnome_reports_no_idle_and_lock_error() -> None:
    bus = FakeBus()
    bus.gnome = False
    desk = WaylandDesktop(bus=bus, session=None)
    assert not desk.capabilities().idle
    with pytest.raises(PlatformError, match="cannot lock"):
        desk.lock()


def test_runtime_on_wayland_reports_degraded_and_locks_at_protect(tmp_path) -> None:
    bus = FakeBus()
    desk = WaylandDesktop(bus=bus, session=None)
    stream = EventStream()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(), desk, stream, FakeClock(), overlay=RecordingSink()
    )
    rt.start()
    rt.stop()
    degraded = [dict(e.data) for e in stream.recent() if e.kind is Kind.CAPABILITY_DEGRADED]
    assert {"capability": "window_list", "reason": "unsupported"} in degraded
    bus.idle_ms = 95_000  # protect_after is 90 s
    rt.protection.step()
    rt.protection.session_lock.join()
    assert bus.calls.count("org.gnome.ScreenSaver.Lock") == 1
    locked = [dict(e.data) for e in stream.recent() if e.kind is Kind.SESSION_LOCKED]
    assert locked == [{"method": "gnome-screensaver"}]
