"""The Wayland backend's D-Bus edges on a private dbus-daemon without service activation, with scripted fake
services: error replies are errors (never an answer), GNOME Shell's own screen-shield name, logind as the fallback
lock state, and what the agent shows where nothing can be covered. The real GNOME Shell is in
test_gnome_session.py."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.i18n import Translator
from agent.platform import logind
from agent.platform.base import Capabilities, PlatformError
from agent.platform.fake import FakeDesktop
from agent.platform.linux_wayland import DBusCallError, SessionBus, WaylandDesktop
from agent.report.stream import EventStream, Kind
from agent.ui.icons import TrayState
from agent.ui.view import build_view
from core.clock import FakeClock
from tests.harness.dbus_services import FakeLogind, FakeService
from tests.harness.fakes import RecordingSink, policy
from tests.harness.gnome import accepts

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="dbus-daemon not installed")

# A bus that starts nothing on demand: on this machine the session configuration would start GNOME's real
# org.gnome.ScreenSaver service (gjs) for a call to an unowned name.
BARE_BUS = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    socket = tmp_path / "bus"
    conf = tmp_path / "bus.conf"
    conf.write_text(BARE_BUS.format(socket=socket), encoding="utf-8")
    proc = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"])
    try:
        deadline = time.monotonic() + 10
        while not accepts(socket):
            assert proc.poll() is None and time.monotonic() < deadline, "dbus-daemon did not start"
            time.sleep(0.02)
        address = f"unix:path={socket}"
        # One daemon plays both buses: jeepney reads these variables for "SESSION" and "SYSTEM".
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=5)


class Shield:
    """org.gnome.ScreenSaver's interface served under ``name`` (GNOME Shell ≥ 3.38 uses its own name)."""

    def __init__(self, address: str, name: str) -> None:
        self.active = False
        self.service = FakeService(address, name, self._handle)

    def _handle(
        self, path: str, iface: str, member: str, body: tuple[Any, ...]
    ) -> tuple[str, tuple[Any, ...]]:
        if path != "/org/gnome/ScreenSaver" or iface != "org.gnome.ScreenSaver":
            raise LookupError(member)
        if member == "GetActive":
            return "b", (self.active,)
        if member == "Lock":
            self.active = True
            return "", ()
        raise LookupError(member)

    def close(self) -> None:
        self.service.close()


def test_an_error_reply_is_an_error_not_an_answer(bus: str) -> None:
    # Before: jeepney returned the error message and its text was read as the answer, so GetActive on a
    # desktop without GNOME Shell said "locked" and GetIdletime crashed on int("The name ... was not provided").
    desk = WaylandDesktop(bus=SessionBus(), session=None)
    with pytest.raises(DBusCallError) as err:
        desk.idle_seconds()
    assert err.value.name == "org.freedesktop.DBus.Error.ServiceUnknown" and err.value.no_service
    with pytest.raises(PlatformError):
        desk.is_locked()
    caps = desk.capabilities()
    assert not caps.idle and not caps.lock_state
    assert any("IdleMonitor does not answer" in n for n in caps.notes)
    with pytest.raises(PlatformError, match="cannot lock"):
        desk.lock()


def test_gnome_shells_own_screen_shield_name(bus: str) -> None:
    shield = Shield(bus, "org.gnome.Shell.ScreenShield")  # no org.gnome.ScreenSaver forwarder (no gjs)
    desk = WaylandDesktop(bus=SessionBus(), session=None)
    try:
        assert not desk.is_locked()
        assert desk.capabilities().lock_method == "gnome-screensaver"
        desk.lock()
        assert shield.active and desk.is_locked()
        assert shield.service.calls.count("org.gnome.ScreenSaver.Lock") == 1
    finally:
        shield.close()


class CountingBus(SessionBus):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def call(self, destination: str, path: str, interface: str, method: str, **kw: Any) -> tuple[Any, ...]:
        self.asked.append(f"{destination} {method}")
        return super().call(destination, path, interface, method, **kw)


def test_a_desktop_without_the_shield_is_not_asked_on_every_sample(bus: str) -> None:
    fake = FakeLogind(bus)
    counting = CountingBus()
    desk = WaylandDesktop(bus=counting, session=logind.Session("7"))
    try:
        for _ in range(5):
            assert not desk.is_locked()
            desk.capabilities()
        shield_calls = [a for a in counting.asked if "GetActive" in a]
        assert shield_calls == ["org.gnome.ScreenSaver GetActive", "org.gnome.Shell.ScreenShield GetActive"]
        # A lock asks again: a shell that came up since is used.
        shield = Shield(bus, "org.gnome.Shell.ScreenShield")
        try:
            desk.lock()
            assert shield.active and desk.is_locked()
        finally:
            shield.close()
    finally:
        fake.close()


def test_the_public_name_is_asked_first(bus: str) -> None:
    public = Shield(bus, "org.gnome.ScreenSaver")
    own = Shield(bus, "org.gnome.Shell.ScreenShield")
    desk = WaylandDesktop(bus=SessionBus(), session=None)
    try:
        desk.lock()
        assert public.active and not own.active and desk.is_locked()
    finally:
        public.close()
        own.close()


def test_without_the_shell_logind_locked_hint_is_the_lock_state(bus: str) -> None:
    fake = FakeLogind(bus)
    desk = WaylandDesktop(bus=SessionBus(), session=logind.Session("7"))
    try:
        assert not desk.is_locked()
        fake.locked = True
        assert desk.is_locked()
        caps = desk.capabilities()
        assert caps.lock_state and caps.lock_before_sleep
        assert any("except by logind's LockedHint" in n for n in caps.notes)
    finally:
        fake.close()


def test_a_shell_that_says_not_active_wins_over_locked_hint(bus: str) -> None:
    # GNOME Shell sets LockedHint as it starts locking, GetActive only once the lock screen is shown.
    shield = Shield(bus, "org.gnome.Shell.ScreenShield")
    fake = FakeLogind(bus)
    fake.locked = True
    desk = WaylandDesktop(bus=SessionBus(), session=logind.Session("7"))
    try:
        assert not desk.is_locked()
        shield.active = True
        assert desk.is_locked()
    finally:
        shield.close()
        fake.close()


def test_a_failing_logind_answer_is_not_locked(bus: str) -> None:
    # A logind whose session has no LockedHint property answers with an error; before, its text read as True.
    def handler(path: str, iface: str, member: str, body: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        if member == "GetSession":
            return "o", ("/org/freedesktop/login1/session/_37",)
        raise LookupError(member)

    service = FakeService(bus, "org.freedesktop.login1", handler)
    try:
        assert logind.Session("7").locked_hint() is False
    finally:
        service.close()


# What Wayland is to the agent: it can lock and tell the lock state, but shows no window and draws no cover.
NO_COVER = Capabilities(
    backend="wayland",
    idle=True,
    lock=True,
    lock_state=True,
    lock_before_sleep=True,
    window_list=False,
    cover=False,
    lock_method="fake",
)


class SlowLockDesktop(FakeDesktop):
    """GNOME Shell answers Lock only once its lock screen is up: lock() waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__([], monitors=(), capabilities=NO_COVER, lock_works=False)
        self.release = threading.Event()

    def lock(self) -> None:
        self.release.wait(10)
        super().lock()


def test_status_says_lock_instead_then_locked_or_unprotected_never_covered(tmp_path: Path) -> None:
    desk = SlowLockDesktop()
    stream = EventStream()
    clock = FakeClock()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path),
        policy(),
        desk,
        stream,
        clock,
        overlay=RecordingSink(),
        lock_verify_timeout=1,
    )
    rt.start()
    try:
        desk.set_idle(95.0)  # past protect_after (90 s): the protect stage locks here
        rt.protection.step()
        status = rt.status()
        assert status["presence"]["stage"] == "lock"
        assert status["cover_state"] == {"state": "lock_instead", "unmatched_rules": [], "drawn": False}
        en = build_view(Translator("en"), status)
        ja = build_view(Translator("ja"), status)
        assert en.state is TrayState.DEGRADED and "covered" not in en.tooltip
        assert "Windows cannot be covered on this desktop, so the screen is being locked instead" in en.lines
        assert "このデスクトップではウィンドウを隠せないため、代わりに画面をロックします" in ja.lines
        desk.release.set()
        rt.protection.session_lock.join()  # the lock did not take: lock_failed
        rt.protection.step()
        status = rt.status()
        assert [dict(e.data) for e in stream.recent() if e.kind is Kind.LOCK_FAILED] == [
            {"method": "fake", "reason": "not_locked"}
        ]
        assert status["cover_state"]["state"] == "unprotected" and not status["cover_state"]["drawn"]
        assert any(
            "the screen is not protected" in line for line in build_view(Translator("en"), status).lines
        )
        assert [e for e in stream.recent() if e.kind is Kind.PROTECTION_APPLIED] == []
        desk.locked = True  # the worker's own lock, say
        rt.protection.step()
        assert rt.status()["cover_state"]["state"] == "locked"
    finally:
        rt.stop()


def test_lock_before_sleep_that_does_not_take_is_lock_failed(tmp_path: Path) -> None:
    desk = FakeDesktop([], lock_works=False)
    stream = EventStream()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(), desk, stream, FakeClock(), overlay=RecordingSink()
    )
    rt.start()
    try:
        desk.sleep_now()
    finally:
        rt.stop()
    assert desk.lock_calls == 1
    assert [e for e in stream.recent() if e.kind is Kind.SESSION_LOCKED] == []
    assert [dict(e.data) for e in stream.recent() if e.kind is Kind.LOCK_FAILED] == [
        {"method": "fake", "reason": "sleep_not_locked"}
    ]


def test_doctor_finds_gnome_shells_lock_screen_on_the_session_bus(bus: str) -> None:
    from agent.commands.doctor import lock_method_problem

    env = {"DBUS_SESSION_BUS_ADDRESS": bus, "PATH": "/usr/bin:/bin"}
    problem = lock_method_problem("gnome-screensaver", (), env, set)
    assert problem is not None and "org.gnome.Shell.ScreenShield" in problem
    shield = Shield(bus, "org.gnome.Shell.ScreenShield")
    try:
        assert lock_method_problem("gnome-screensaver", (), env, set) is None
    finally:
        shield.close()
