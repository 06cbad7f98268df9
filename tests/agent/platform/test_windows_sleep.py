"""Lock before sleep on Windows, over a scripted user32 that runs a real message loop: the backend's hidden
window gets WM_POWERBROADCAST / WM_WTSSESSION_CHANGE through GetMessageW and DispatchMessageW (which calls the
window procedure the backend registered), LockWorkStation switches the input desktop to Winlogon as Windows does.
The agent's real protection loop and lock-and-verify run above it."""

from __future__ import annotations

import ctypes
import dataclasses
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.platform.windows import (
    GUID_CONSOLE_DISPLAY_STATE,
    PBT_APMSUSPEND,
    PBT_POWERSETTINGCHANGE,
    POWER_CLASS,
    POWERBROADCAST_SETTING,
    WM_POWERBROADCAST,
    WM_WTSSESSION_CHANGE,
    WTS_SESSION_LOCK,
    WTS_SESSION_UNLOCK,
    WindowsDesktop,
)
from agent.report.stream import EventStream, Kind
from agent.runtime import Runtime
from core.clock import FakeClock
from tests.agent.platform.test_windows import FakeDwmapi, FakeKernel32, FakeUser32
from tests.harness.fakes import RecordingSink, policy

WM_CLOSE = 0x0010
WM_QUIT = 0x0012


class PowerUser32(FakeUser32):
    """FakeUser32 with window classes, windows and a thread message queue."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, Any] = {}
        self.created: list[tuple[str, int]] = []  # (class, style)
        self.messages: queue.Queue[tuple[int, int, int, int]] = queue.Queue()
        self.dispatched = 0
        self.power_settings: list[bytes] = []
        self.lock_engages = True  # False: LockWorkStation returns TRUE but nothing locks
        self.destroyed: list[int] = []
        self._keep: list[Any] = []

    # window classes and windows
    def RegisterClassW(self, ptr: Any) -> int:
        cls = ptr._obj
        self.classes[cls.lpszClassName] = cls.lpfnWndProc
        return 0xC001

    def CreateWindowExW(self, ex: int, cls: str, name: str, style: int, *rest: Any) -> int:
        assert cls in self.classes
        self.created.append((cls, style))
        return 0x500

    def DefWindowProcW(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int:
        return 0

    def DestroyWindow(self, hwnd: int) -> int:
        self.destroyed.append(hwnd)
        return 1

    def RegisterPowerSettingNotification(self, hwnd: int, guid: Any, flags: int) -> int:
        self.power_settings.append(bytes(guid._obj))
        return 0x77

    # the message queue
    def PostMessageW(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int:
        self.messages.put((hwnd, msg, wparam, lparam))
        return 1

    def PostQuitMessage(self, code: int) -> None:
        self.messages.put((0, WM_QUIT, code, 0))

    def GetMessageW(self, ptr: Any, hwnd: Any, low: int, high: int) -> int:
        target, msg, wparam, lparam = self.messages.get(timeout=30)
        if msg == WM_QUIT:
            return 0
        m = ptr._obj
        m.hwnd, m.message, m.wParam, m.lParam = target, msg, wparam, lparam
        return 1

    def TranslateMessage(self, ptr: Any) -> int:
        return 0

    def DispatchMessageW(self, ptr: Any) -> int:
        m = ptr._obj
        result = self.classes[POWER_CLASS](m.hwnd, m.message, m.wParam, m.lParam)
        self.dispatched += 1
        return int(result)

    # what Windows does
    def LockWorkStation(self) -> int:
        self.lock_calls += 1
        if self.lock_engages:
            self.input_desktop = "Winlogon"
            self.PostMessageW(0x500, WM_WTSSESSION_CHANGE, WTS_SESSION_LOCK, 1)
        return self.lock_result

    def display_state(self, value: int) -> None:
        setting = POWERBROADCAST_SETTING()
        ctypes.memmove(ctypes.byref(setting.PowerSetting), ctypes.byref(GUID_CONSOLE_DISPLAY_STATE), 16)
        setting.DataLength = 4
        setting.Data[0] = value
        self._keep.append(setting)
        self.PostMessageW(0x500, WM_POWERBROADCAST, PBT_POWERSETTINGCHANGE, ctypes.addressof(setting))

    def wait_dispatched(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while self.dispatched < count:
            assert time.monotonic() < deadline, "message not dispatched"
            time.sleep(0.01)


class PowerKernel32(FakeKernel32):
    def GetModuleHandleW(self, name: Any) -> int:
        return 0x400000


class FakeWtsapi32:
    def __init__(self) -> None:
        self.registered: list[tuple[int, int]] = []
        self.unregistered: list[int] = []

    def WTSRegisterSessionNotification(self, hwnd: int, flags: int) -> int:
        self.registered.append((hwnd, flags))
        return 1

    def WTSUnRegisterSessionNotification(self, hwnd: int) -> int:
        self.unregistered.append(hwnd)
        return 1


@dataclasses.dataclass
class Setup:
    desk: WindowsDesktop
    user32: PowerUser32
    wts: FakeWtsapi32
    stream: EventStream
    runtime: Runtime

    def locks(self) -> list[dict[str, object]]:
        return [
            dict(e.data) for e in self.stream.recent() if e.kind in (Kind.SESSION_LOCKED, Kind.LOCK_FAILED)
        ]


def start(tmp: Path, *, lock_before_sleep: bool = True) -> Setup:
    user32, wts = PowerUser32(), FakeWtsapi32()
    desk = WindowsDesktop(
        user32, PowerKernel32(), FakeDwmapi(user32), process_name=lambda _p: "", wtsapi32=wts
    )
    p = policy()
    p = dataclasses.replace(p, presence=dataclasses.replace(p.presence, lock_before_sleep=lock_before_sleep))
    stream = EventStream()
    rt = build_runtime(AgentConfig(state_dir=tmp), p, desk, stream, FakeClock(), overlay=RecordingSink())
    rt.protection.start()  # takes the power watch, like the runtime's start
    return Setup(desk, user32, wts, stream, rt)


@pytest.fixture
def win(tmp_path: Path) -> Iterator[Setup]:
    setup = start(tmp_path)
    yield setup
    setup.desk.stop_watching_sleep()


def test_the_hidden_window_registers_for_power_and_session_notifications(win: Setup) -> None:
    assert win.desk.capabilities().lock_before_sleep
    assert win.user32.created == [(POWER_CLASS, 0)]  # a top-level window, never shown (no WS_VISIBLE)
    assert win.wts.registered == [(0x500, 0)]  # NOTIFY_FOR_THIS_SESSION
    assert win.user32.power_settings == [bytes(GUID_CONSOLE_DISPLAY_STATE)]


def test_suspend_locks_and_the_lock_is_verified(win: Setup) -> None:
    win.user32.PostMessageW(0x500, WM_POWERBROADCAST, PBT_APMSUSPEND, 0)
    win.user32.wait_dispatched(1)
    assert win.user32.lock_calls == 1
    assert win.locks() == [{"method": "LockWorkStation"}]
    win.user32.wait_dispatched(2)  # the WTS_SESSION_LOCK Windows posted
    win.user32.input_desktop = "Default"  # even before the input desktop is read, the WTS word counts
    assert win.desk.is_locked()
    win.user32.PostMessageW(0x500, WM_WTSSESSION_CHANGE, WTS_SESSION_UNLOCK, 1)
    win.user32.wait_dispatched(3)
    assert not win.desk.is_locked()


def test_display_off_locks_display_on_does_not(win: Setup) -> None:
    win.user32.display_state(1)
    win.user32.wait_dispatched(1)
    assert win.user32.lock_calls == 0
    win.user32.display_state(0)  # how a Modern Standby PC starts to sleep
    win.user32.wait_dispatched(2)
    assert win.user32.lock_calls == 1 and win.locks() == [{"method": "LockWorkStation"}]


def test_a_lock_that_does_not_engage_is_reported(win: Setup) -> None:
    win.user32.lock_engages = False
    win.user32.PostMessageW(0x500, WM_POWERBROADCAST, PBT_APMSUSPEND, 0)
    win.user32.wait_dispatched(1)
    assert win.locks() == [{"method": "LockWorkStation", "reason": "sleep_not_locked"}]
    win.user32.lock_result = 0  # LockWorkStation itself fails
    win.user32.PostMessageW(0x500, WM_POWERBROADCAST, PBT_APMSUSPEND, 0)
    win.user32.wait_dispatched(2)
    assert win.locks()[-1] == {"method": "LockWorkStation", "reason": "sleep"}


def test_policy_without_lock_before_sleep_does_not_lock(tmp_path: Path) -> None:
    setup = start(tmp_path, lock_before_sleep=False)
    try:
        setup.user32.PostMessageW(0x500, WM_POWERBROADCAST, PBT_APMSUSPEND, 0)
        setup.user32.wait_dispatched(1)
        assert setup.user32.lock_calls == 0 and setup.locks() == []
    finally:
        setup.desk.stop_watching_sleep()


def test_closing_the_window_ends_the_message_loop(tmp_path: Path) -> None:
    setup = start(tmp_path)
    thread = setup.desk._power_thread
    assert thread is not None and thread.is_alive()
    setup.desk.stop_watching_sleep()
    assert not thread.is_alive()
    assert setup.user32.destroyed == [0x500] and setup.wts.unregistered == [0x500]
