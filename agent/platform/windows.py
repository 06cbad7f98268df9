"""Windows backend (ctypes, no extra dependency).

- idle: ``GetLastInputInfo`` against ``GetTickCount`` (both 32-bit milliseconds; the difference wraps).
- windows: ``EnumWindows`` (top to bottom, reversed to "topmost last"), ``IsWindowVisible``, ``GetWindowTextW``,
  ``GetWindowThreadProcessId``, ``IsIconic``, ``GetForegroundWindow``, ``GetClassNameW``. Cloaked windows
  (``DWMWA_CLOAKED``: other virtual desktops, suspended UWP apps) are skipped: they are not on screen.
  Geometry: ``DWMWA_EXTENDED_FRAME_BOUNDS`` (the visible frame without the invisible resize borders), else
  ``GetWindowRect``. The process is made per-monitor DPI aware first, so every rectangle is in physical pixels
  and the cover helper (also DPI aware, agent/overlay/helper.py) places covers on the same pixels.
- monitors: ``EnumDisplayMonitors`` + ``GetMonitorInfoW``.
- locked: no input desktop, or an input desktop that is not "Default" (the secure desktop while locked), or a
  running screensaver (``SPI_GETSCREENSAVERRUNNING``).
- lock: ``LockWorkStation`` (asynchronous: the runtime verifies afterwards).

The DLLs are injected (``user32``, ``kernel32``, ``dwmapi``); tests pass fakes with the same functions.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from ctypes import wintypes
from typing import Any

from agent.platform.base import Capabilities, Monitor, PlatformError, Rect, Window

if sys.platform == "win32":
    _FUNCTYPE = ctypes.WINFUNCTYPE
else:  # only for tests on other systems: the fakes call the callbacks directly
    _FUNCTYPE = ctypes.CFUNCTYPE

DWMWA_EXTENDED_FRAME_BOUNDS = 9
DWMWA_CLOAKED = 14
MONITORINFOF_PRIMARY = 1
DESKTOP_READOBJECTS = 0x0001
UOI_NAME = 2
SPI_GETSCREENSAVERRUNNING = 0x0072
DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2 = -4


# Fixed-width field types: Windows is LLP64 (DWORD and LONG are 32-bit), while ctypes.wintypes maps them to
# c_ulong/c_long, which are 64-bit elsewhere. Exact sizes keep cbSize right and the fakes honest.
DWORD = ctypes.c_uint32
LONG = ctypes.c_int32


class RECT(ctypes.Structure):
    _fields_ = [("left", LONG), ("top", LONG), ("right", LONG), ("bottom", LONG)]


class LASTINPUTINFO(ctypes.Structure):
    _fields_ = [("cbSize", ctypes.c_uint32), ("dwTime", DWORD)]


WNDENUMPROC = _FUNCTYPE(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)
MONITORENUMPROC = _FUNCTYPE(
    wintypes.BOOL, wintypes.HMONITOR, wintypes.HDC, ctypes.POINTER(RECT), wintypes.LPARAM
)


class MONITORINFO(ctypes.Structure):
    _fields_ = [
        ("cbSize", DWORD),
        ("rcMonitor", RECT),
        ("rcWork", RECT),
        ("dwFlags", DWORD),
    ]


def _last_error() -> int:
    if sys.platform == "win32":
        return ctypes.get_last_error()
    return 0


def _rect(r: RECT) -> Rect:
    return Rect(int(r.left), int(r.top), int(r.right - r.left), int(r.bottom - r.top))


def _psutil_name(pid: int) -> str:
    import psutil

    try:
        return psutil.Process(pid).name()
    except (psutil.Error, OSError):
        return ""


class WindowsDesktop:
    def __init__(
        self,
        user32: Any = None,
        kernel32: Any = None,
        dwmapi: Any = None,
        process_name: Callable[[int], str] = _psutil_name,
    ) -> None:
        if user32 is None or kernel32 is None:
            if sys.platform != "win32":
                raise PlatformError("the Windows backend runs only on Windows")
            user32 = ctypes.WinDLL("user32", use_last_error=True)
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            try:
                dwmapi = ctypes.WinDLL("dwmapi")
            except OSError:
                dwmapi = None
        self._user32 = user32
        self._kernel32 = kernel32
        self._dwmapi = dwmapi
        self._process_name = process_name
        self._dpi_aware = self._make_dpi_aware()

    def _make_dpi_aware(self) -> bool:
        try:
            ctx = ctypes.c_void_p(DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2)
            return bool(self._user32.SetProcessDpiAwarenessContext(ctx))
        except (AttributeError, OSError):  # before Windows 10 1703
            try:
                return bool(self._user32.SetProcessDPIAware())
            except (AttributeError, OSError):
                return False

    def capabilities(self) -> Capabilities:
        notes = ["lock before sleep: rely on the OS 'require sign-in on wake' setting (checked by posture)"]
        if not self._dpi_aware:
            notes.append("not DPI aware: covers may be misplaced on scaled monitors")
        return Capabilities(
            backend="windows",
            idle=True,
            window_list=True,
            window_pids=True,
            lock=True,
            lock_state=True,
            lock_before_sleep=False,
            cover=True,
            notes=tuple(notes),
            lock_method="LockWorkStation",
        )

    def idle_seconds(self) -> float:
        info = LASTINPUTINFO()
        info.cbSize = ctypes.sizeof(LASTINPUTINFO)
        if not self._user32.GetLastInputInfo(ctypes.byref(info)):
            raise PlatformError(f"GetLastInputInfo failed (error {_last_error()})")
        now = int(self._kernel32.GetTickCount()) & 0xFFFFFFFF
        return ((now - int(info.dwTime)) & 0xFFFFFFFF) / 1000.0

    def _cloaked(self, hwnd: int) -> bool:
        if self._dwmapi is None:
            return False
        value = DWORD(0)
        result = self._dwmapi.DwmGetWindowAttribute(
            hwnd, DWMWA_CLOAKED, ctypes.byref(value), ctypes.sizeof(value)
        )
        return result == 0 and bool(value.value)

    def _bounds(self, hwnd: int) -> Rect | None:
        r = RECT()
        if self._dwmapi is not None:
            ok = self._dwmapi.DwmGetWindowAttribute(
                hwnd, DWMWA_EXTENDED_FRAME_BOUNDS, ctypes.byref(r), ctypes.sizeof(r)
            )
            if ok == 0:
                return _rect(r)
        if self._user32.GetWindowRect(hwnd, ctypes.byref(r)):
            return _rect(r)
        return None

    def _text(self, func: Any, hwnd: int, size: int) -> str:
        buf = ctypes.create_unicode_buffer(size)
        func(hwnd, buf, size)
        return buf.value

    def windows(self) -> list[Window]:
        handles: list[int] = []

        def collect(hwnd: Any, _lparam: Any) -> bool:
            handles.append(int(hwnd or 0))
            return True

        callback = WNDENUMPROC(collect)  # kept referenced for the duration of the call
        if not self._user32.EnumWindows(callback, 0):
            raise PlatformError(f"EnumWindows failed (error {_last_error()})")
        monitors = [m.rect for m in self.monitors()]
        foreground = int(self._user32.GetForegroundWindow() or 0)
        out: list[Window] = []
        for hwnd in reversed(handles):  # EnumWindows goes top to bottom; the Protocol wants topmost last
            if not hwnd or not self._user32.IsWindowVisible(hwnd) or self._cloaked(hwnd):
                continue
            rect = self._bounds(hwnd)
            if rect is None:
                continue  # the window closed meanwhile: skip it, keep the others (psutil's ad_value)
            length = int(self._user32.GetWindowTextLengthW(hwnd))
            title = self._text(self._user32.GetWindowTextW, hwnd, length + 1) if length > 0 else ""
            pid = DWORD(0)
            self._user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
            pid_value = int(pid.value) or None
            out.append(
                Window(
                    id=hwnd,
                    title=title,
                    pid=pid_value,
                    process_name=self._process_name(pid_value) if pid_value else "",
                    rect=rect,
                    wm_class=self._text(self._user32.GetClassNameW, hwnd, 256),
                    active=hwnd == foreground,
                    fullscreen=rect in monitors,
                    minimized=bool(self._user32.IsIconic(hwnd)),
                )
            )
        return out

    def monitors(self) -> list[Monitor]:
        found: list[Monitor] = []

        def collect(hmonitor: Any, _hdc: Any, _rect_ptr: Any, _lparam: Any) -> bool:
            info = MONITORINFO()
            info.cbSize = ctypes.sizeof(MONITORINFO)
            if self._user32.GetMonitorInfoW(hmonitor, ctypes.byref(info)):
                found.append(
                    Monitor(_rect(info.rcMonitor), primary=bool(info.dwFlags & MONITORINFOF_PRIMARY))
                )
            return True

        callback = MONITORENUMPROC(collect)
        if not self._user32.EnumDisplayMonitors(None, None, callback, 0):
            raise PlatformError(f"EnumDisplayMonitors failed (error {_last_error()})")
        return found

    def is_locked(self) -> bool:
        running = wintypes.BOOL(False)
        if self._user32.SystemParametersInfoW(
            SPI_GETSCREENSAVERRUNNING, 0, ctypes.byref(running), 0
        ) and bool(running.value):
            return True
        desk = self._user32.OpenInputDesktop(0, False, DESKTOP_READOBJECTS)
        if not desk:
            return True  # the input desktop is the secure (Winlogon) desktop: locked
        try:
            name = ctypes.create_unicode_buffer(256)
            needed = DWORD(0)
            if not self._user32.GetUserObjectInformationW(
                desk, UOI_NAME, name, ctypes.sizeof(name), ctypes.byref(needed)
            ):
                raise PlatformError(f"GetUserObjectInformationW failed (error {_last_error()})")
            return name.value.lower() != "default"
        finally:
            self._user32.CloseDesktop(desk)

    def lock(self) -> None:
        if not self._user32.LockWorkStation():
            raise PlatformError(f"LockWorkStation failed (error {_last_error()})")
