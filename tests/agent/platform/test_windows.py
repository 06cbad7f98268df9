"""The Windows backend over scripted fakes of user32 / kernel32 / dwmapi (same function names and calling
conventions: out-parameters are written through the ``byref`` pointers the backend passes)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import pytest

from agent.decide.match import match_windows
from agent.platform.base import Monitor, PlatformError, Rect
from agent.platform.windows import DWMWA_CLOAKED, DWMWA_EXTENDED_FRAME_BOUNDS, WindowsDesktop
from tests.harness.fakes import policy


@dataclass
class FakeHwnd:
    title: str
    pid: int
    rect: tuple[int, int, int, int]  # left, top, right, bottom (GetWindowRect, with invisible borders)
    frame: tuple[int, int, int, int] | None = None  # DWM extended frame bounds
    visible: bool = True
    iconic: bool = False
    cloaked: bool = False
    cls: str = "Chrome_WidgetWin_1"


def _set_rect(ptr: Any, values: tuple[int, int, int, int]) -> None:
    r = ptr._obj
    r.left, r.top, r.right, r.bottom = values


class FakeUser32:
    def __init__(self) -> None:
        self.windows: dict[int, FakeHwnd] = {}
        self.z_order: list[int] = []  # top to bottom, as EnumWindows reports
        self.foreground = 0
        self.last_input = 0
        self.monitors = [((0, 0, 2560, 1440), 1), ((2560, 0, 4480, 1080), 0)]
        self.input_desktop = "Default"
        self.screensaver = False
        self.lock_calls = 0
        self.lock_result = 1
        self.dpi_context: int | None = None

    def SetProcessDpiAwarenessContext(self, ctx: ctypes.c_void_p) -> int:
        self.dpi_context = ctx.value
        return 1

    def GetLastInputInfo(self, ptr: Any) -> int:
        assert ptr._obj.cbSize == 8  # 32-bit UINT + DWORD, as on Windows
        ptr._obj.dwTime = self.last_input
        return 1

    def EnumWindows(self, callback: Any, lparam: int) -> int:
        for hwnd in self.z_order:
            if not callback(hwnd, lparam):
                break
        return 1

    def GetForegroundWindow(self) -> int:
        return self.foreground

    def IsWindowVisible(self, hwnd: int) -> int:
        return int(self.windows[hwnd].visible)

    def IsIconic(self, hwnd: int) -> int:
        return int(self.windows[hwnd].iconic)

    def GetWindowRect(self, hwnd: int, ptr: Any) -> int:
        if hwnd not in self.windows:
            return 0
        _set_rect(ptr, self.windows[hwnd].rect)
        return 1

    def GetWindowTextLengthW(self, hwnd: int) -> int:
        return len(self.windows[hwnd].title)

    def GetWindowTextW(self, hwnd: int, buf: Any, size: int) -> int:
        buf.value = self.windows[hwnd].title[: size - 1]
        return len(buf.value)

    def GetClassNameW(self, hwnd: int, buf: Any, size: int) -> int:
        buf.value = self.windows[hwnd].cls[: size - 1]
        return len(buf.value)

    def GetWindowThreadProcessId(self, hwnd: int, ptr: Any) -> int:
        ptr._obj.value = self.windows[hwnd].pid
        return 77

    def EnumDisplayMonitors(self, hdc: Any, clip: Any, callback: Any, lparam: int) -> int:
        for index in range(len(self.monitors)):
            callback(index + 1, None, None, lparam)
        return 1

    def GetMonitorInfoW(self, hmonitor: int, ptr: Any) -> int:
        rect, flags = self.monitors[hmonitor - 1]
        assert ptr._obj.cbSize == ctypes.sizeof(ptr._obj)
        _set_rect(ctypes.byref(ptr._obj.rcMonitor), rect)
        ptr._obj.dwFlags = flags
        return 1

    def SystemParametersInfoW(self, action: int, ui: int, ptr: Any, win_ini: int) -> int:
        ptr._obj.value = self.screensaver
        return 1

    def OpenInputDesktop(self, flags: int, inherit: bool, access: int) -> int:
        return 0 if self.input_desktop is None else 99

    def GetUserObjectInformationW(self, handle: int, index: int, buf: Any, size: int, needed: Any) -> int:
        buf.value = self.input_desktop
        return 1

    def CloseDesktop(self, handle: int) -> int:
        return 1

    def LockWorkStation(self) -> int:
        self.lock_calls += 1
        return self.lock_result


class FakeKernel32:
    def __init__(self) -> None:
        self.tick = 0

    def GetTickCount(self) -> int:
        return self.tick


class FakeDwmapi:
    def __init__(self, user32: FakeUser32) -> None:
        self.user32 = user32

    def DwmGetWindowAttribute(self, hwnd: int, attr: int, ptr: Any, size: int) -> int:
        win = self.user32.windows[hwnd]
        if attr == DWMWA_CLOAKED:
            ptr._obj.value = 2 if win.cloaked else 0
            return 0
        if attr == DWMWA_EXTENDED_FRAME_BOUNDS and win.frame is not None:
            _set_rect(ptr, win.frame)
            return 0
        return -2147024809  # E_INVALIDARG


@pytest.fixture
def win() -> tuple[WindowsDesktop, FakeUser32, FakeKernel32]:
    user32, kernel32 = FakeUser32(), FakeKernel32()
    names = {10: "chrome.exe", 20: "EXCEL.EXE", 30: "notepad.exe"}
    desk = WindowsDesktop(user32, kernel32, FakeDwmapi(user32), process_name=lambda pid: names.get(pid, ""))
    return desk, user32, kernel32


def test_dpi_awareness_is_requested_first(win) -> None:
    _, user32, _ = win
    assert user32.dpi_context == ctypes.c_void_p(-4).value


def test_idle_wraps_around_the_32_bit_tick_counter(win) -> None:
    desk, user32, kernel32 = win
    user32.last_input, kernel32.tick = 1000, 91_000
    assert desk.idle_seconds() == 90.0
    user32.last_input, kernel32.tick = 0xFFFFFF00, 0x00000F00  # GetTickCount wrapped after 49.7 days
    assert desk.idle_seconds() == pytest.approx((0x100 + 0xF00) / 1000)


def test_windows_skip_hidden_and_cloaked_use_frame_bounds_and_match(win) -> None:
    desk, user32, _ = win
    user32.windows = {
        1: FakeHwnd(
            "取引先 - Salesforce - Google Chrome", 10, (93, 93, 1007, 807), frame=(100, 100, 1000, 800)
        ),
        2: FakeHwnd("顧客台帳.xlsx - Excel", 20, (0, 0, 2560, 1440), cls="XLMAIN"),
        3: FakeHwnd("hidden", 30, (0, 0, 10, 10), visible=False),
        4: FakeHwnd("other desktop Salesforce", 10, (0, 0, 500, 500), cloaked=True),
        5: FakeHwnd("memo.txt - Notepad", 30, (10, 10, 300, 300), iconic=True),
    }
    user32.z_order = [1, 2, 3, 4, 5]
    user32.foreground = 1
    windows = desk.windows()
    assert [w.id for w in windows] == [5, 2, 1]  # topmost last; hidden and cloaked skipped
    chrome = windows[-1]
    assert chrome.rect == Rect(100, 100, 900, 700)  # DWM frame, not the rect with invisible borders
    assert chrome.active and chrome.process_name == "chrome.exe" and chrome.pid == 10
    excel = windows[1]
    assert excel.fullscreen and excel.wm_class == "XLMAIN"
    assert windows[0].minimized
    assert [(m.window.id, m.rule) for m in match_windows(policy().customer_apps, windows)] == [
        (2, "ledger"),
        (1, "crm"),
    ]


def test_monitors(win) -> None:
    desk, _, _ = win
    assert desk.monitors() == [
        Monitor(Rect(0, 0, 2560, 1440), primary=True),
        Monitor(Rect(2560, 0, 1920, 1080), primary=False),
    ]


def test_lock_state_from_input_desktop_and_screensaver(win) -> None:
    desk, user32, _ = win
    assert not desk.is_locked()
    user32.input_desktop = "Winlogon"
    assert desk.is_locked()
    user32.input_desktop = None  # OpenInputDesktop fails while the secure desktop is up
    assert desk.is_locked()
    user32.input_desktop = "Default"
    user32.screensaver = True
    assert desk.is_locked()


def test_lock_calls_lock_workstation_and_reports_failure(win) -> None:
    desk, user32, _ = win
    desk.lock()
    assert user32.lock_calls == 1
    user32.lock_result = 0
    with pytest.raises(PlatformError, match="LockWorkStation failed"):
        desk.lock()
    caps = desk.capabilities()
    assert caps.backend == "windows" and caps.window_list and caps.lock_method == "LockWorkStation"


def test_not_on_windows_without_fakes() -> None:
    import sys

    if sys.platform == "win32":
        pytest.skip("this checks the error on other systems")
    with pytest.raises(PlatformError, match="only on Windows"):
        WindowsDesktop()
