"""The desktop's screen saver on the session bus as lock evidence on X11 (agent/platform/x11_screensaver.py):
over a real dbus-daemon with a scripted org.freedesktop.ScreenSaver, and through X11Desktop on a real X server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agent.platform.linux_x11 import X11Desktop
from agent.platform.session_bus import SessionBus
from agent.platform.x11_screensaver import DesktopScreenSaver, session_bus_available
from tests.harness.dbus_services import FakeService, private_bus
from tests.harness.xdesktop import XDesktop, wait_for


class Saver:
    """A desktop screen saver (KDE's or Xfce's name) whose lock screen the test raises and drops."""

    def __init__(self, address: str, name: str = "org.freedesktop.ScreenSaver") -> None:
        self.active = False
        self.service = FakeService(address, name, self._handle)

    def _handle(
        self, path: str, iface: str, member: str, body: tuple[Any, ...]
    ) -> tuple[str, tuple[Any, ...]]:
        if member == "GetActive" and iface.endswith(".ScreenSaver"):
            return "b", (self.active,)
        raise LookupError(member)

    def close(self) -> None:
        self.service.close()


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    try:
        with private_bus(tmp_path) as address:
            monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
            yield address  # type: ignore[misc]
    except RuntimeError as err:
        pytest.skip(str(err))


def test_only_a_running_screen_saver_is_asked_and_its_answer_is_taken(bus: str) -> None:
    assert session_bus_available()
    saver = DesktopScreenSaver(SessionBus())
    assert saver.active() is None and saver.name() is None  # nobody owns a screen-saver name
    kde = Saver(bus)
    try:
        saver._recheck_at = (
            0.0  # the owner check is rate-limited (OWNER_RECHECK); the test does not wait 30 s
        )
        assert saver.active() is False and saver.name() == "org.freedesktop.ScreenSaver"
        kde.active = True
        assert saver.active() is True
        assert kde.service.calls.count("org.freedesktop.ScreenSaver.GetActive") == 2
    finally:
        kde.close()
    time.sleep(0.3)
    assert saver.active() is None  # gone from the bus: no answer, and no claim of a lock
    saver.close()


def test_gnome_on_xorg_name_is_asked_too(bus: str) -> None:
    gnome = Saver(bus, "org.gnome.ScreenSaver")
    try:
        gnome.active = True
        saver = DesktopScreenSaver(SessionBus())
        assert saver.active() is True and saver.name() == "org.gnome.ScreenSaver"
        saver.close()
    finally:
        gnome.close()


def test_x11_desktop_takes_the_desktop_screen_saver_as_lock_evidence(xdesktop: XDesktop, bus: str) -> None:
    kde = Saver(bus)
    desktop = X11Desktop(xdesktop.display)
    try:
        assert desktop.is_locked() is False
        kde.active = True
        wait_for(desktop.is_locked, timeout=5, what="the desktop screen saver's lock seen")
        kde.active = False
        wait_for(lambda: not desktop.is_locked(), timeout=5, what="unlocked again")
    finally:
        desktop.close()
        kde.close()
