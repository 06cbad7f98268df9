"""The D-Bus code of the Linux backends against a real (private) dbus-daemon with scripted fake services."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.platform import logind
from agent.platform.linux_wayland import SessionBus, WaylandDesktop
from tests.harness.dbus_services import FakeGnome, FakeLogind, private_bus
from tests.harness.xdesktop import wait_for

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("dbus-daemon") is None, reason="dbus-daemon not installed (run .ci/run)"
)


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with private_bus(tmp_path) as address:
        # One daemon plays both buses: jeepney reads these variables for "SESSION" and "SYSTEM".
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address


def test_wayland_backend_over_the_session_bus(bus: str) -> None:
    gnome = FakeGnome(bus)
    try:
        desk = WaylandDesktop(bus=SessionBus(), session=None)
        gnome.idle_ms = 123_456
        assert desk.idle_seconds() == pytest.approx(123.456)
        assert desk.capabilities().idle
        assert not desk.is_locked()
        desk.lock()
        assert desk.is_locked() and "org.gnome.ScreenSaver.Lock" in gnome.saver.calls
    finally:
        gnome.close()


def test_logind_locked_hint(bus: str) -> None:
    fake = FakeLogind(bus)
    try:
        session = logind.Session("7")
        assert not session.locked_hint()
        fake.locked = True
        assert session.locked_hint()
        assert fake.service.calls.count("org.freedesktop.login1.Manager.GetSession") == 1  # path cached
    finally:
        fake.close()


def test_lock_before_sleep_holds_a_delay_inhibitor_and_releases_it_after_locking(bus: str) -> None:
    fake = FakeLogind(bus)
    locked = threading.Event()
    try:
        logind.watch_sleep(locked.set)
        wait_for(lambda: fake.inhibitors, timeout=5, what="delay inhibitor taken")
        assert not fake.inhibitor_released(0)
        fake.prepare_for_sleep(True)
        assert locked.wait(5), "before_sleep was not called"
        wait_for(lambda: fake.inhibitor_released(0), timeout=5, what="inhibitor released so sleep proceeds")
        fake.prepare_for_sleep(False)  # woke up: a new inhibitor for the next sleep
        wait_for(lambda: len(fake.inhibitors) == 2, timeout=5, what="inhibitor taken again")
    finally:
        fake.close()
