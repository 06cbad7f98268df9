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
- lock before sleep (:meth:`WindowsDesktop.watch_sleep`): a hidden top-level window on its own thread (power
  broadcasts reach top-level windows only, not message-only ones) receives ``WM_POWERBROADCAST``:
  ``PBT_APMSUSPEND`` (the system suspends; Windows allows about 2 s of work) and, through
  ``RegisterPowerSettingNotification(GUID_CONSOLE_DISPLAY_STATE)``, the display turning off (how a Modern
  Standby PC, which sends no ``PBT_APMSUSPEND``, starts to sleep). Each calls the lock-before-sleep callback,
  which locks with ``LockWorkStation`` and verifies. ``WTSRegisterSessionNotification`` delivers
  ``WM_WTSSESSION_CHANGE``: ``WTS_SESSION_LOCK`` / ``UNLOCK`` are the OS's own word on the lock state, used by
  :meth:`WindowsDesktop.is_locked` besides the input desktop.

The DLLs are injected (``user32``, ``kernel32``, ``dwmapi``, ``wtsapi32``); tests pass fakes with the same
functions.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
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


WM_CLOSE = 0x0010
WM_POWERBROADCAST = 0x0218
WM_WTSSESSION_CHANGE = 0x02B1
PBT_APMSUSPEND = 0x0004
PBT_POWERSETTINGCHANGE = 0x8013
WTS_SESSION_LOCK = 0x7
WTS_SESSION_UNLOCK = 0x8
NOTIFY_FOR_THIS_SESSION = 0
DEVICE_NOTIFY_WINDOW_HANDLE = 0
POWER_CLASS = "MamoriPowerWatch"

logger = logging.getLogger(__name__)


# Fixed-width field types: Windows is LLP64 (DWORD and LONG are 32-bit), while ctypes.wintypes maps them to
# c_ulong/c_long, which are 64-bit elsewhere. Exact sizes keep cbSize right and the fakes honest.
DWORD = ctypes.c_uint32
LONG = ctypes.c_int32


class RECT(ctypes.Structure):
    _fields_ = [("left", LONG), ("top", LONG), ("right", LONG), ("bottom", LONG)]


class LASTINPUTINFO(ctypes.Structure):
    _fields_ = [("cbSize", ctypes.c_uint32), ("dwTime", DWORD)]


class GUID(ctypes.Structure):
    _fields_ = [
        ("Data1", ctypes.c_uint32),
        ("Data2", ctypes.c_uint16),
        ("Data3", ctypes.c_uint16),
        ("Data4", ctypes.c_ubyte * 8),
    ]


def _guid(d1: int, d2: int, d3: int, d4: bytes) -> GUID:
    return GUID(d1, d2, d3, (ctypes.c_ubyte * 8)(*d4))


# {6FE69556-704A-47A0-8F24-C28D936FDA47}: the console display is off (0), on (1) or dimmed (2).
GUID_CONSOLE_DISPLAY_STATE = _guid(0x6FE69556, 0x704A, 0x47A0, bytes.fromhex("8f24c28d936fda47"))


class POWERBROADCAST_SETTING(ctypes.Structure):
    _fields_ = [("PowerSetting", GUID), ("DataLength", DWORD), ("Data", ctypes.c_ubyte * 4)]


LRESULT = ctypes.c_ssize_t
WNDPROC = _FUNCTYPE(LRESULT, wintypes.HWND, ctypes.c_uint, wintypes.WPARAM, wintypes.LPARAM)


class WNDCLASSW(ctypes.Structure):
    _fields_ = [
        ("style", ctypes.c_uint),
        ("lpfnWndProc", WNDPROC),
        ("cbClsExtra", ctypes.c_int),
        ("cbWndExtra", ctypes.c_int),
        ("hInstance", wintypes.HANDLE),
        ("hIcon", wintypes.HANDLE),
        ("hCursor", wintypes.HANDLE),
        ("hbrBackground", wintypes.HANDLE),
        ("lpszMenuName", wintypes.LPCWSTR),
        ("lpszClassName", wintypes.LPCWSTR),
    ]


class MSG(ctypes.Structure):
    _fields_ = [
        ("hwnd", wintypes.HWND),
        ("message", ctypes.c_uint),
        ("wParam", wintypes.WPARAM),
        ("lParam", wintypes.LPARAM),
        ("time", DWORD),
        ("pt_x", LONG),
        ("pt_y", LONG),
        ("lPrivate", DWORD),
    ]


def declare_window_api(user32: Any, kernel32: Any, wtsapi32: Any) -> None:
    """Pointer-sized arguments and results, which ctypes would otherwise pass and return as 32-bit ints (a
    64-bit module handle or window handle would be cut or refused)."""
    hwnd, msg = wintypes.HWND, ctypes.POINTER(MSG)
    kernel32.GetModuleHandleW.argtypes = [wintypes.LPCWSTR]
    kernel32.GetModuleHandleW.restype = wintypes.HMODULE
    user32.RegisterClassW.argtypes = [ctypes.POINTER(WNDCLASSW)]
    user32.RegisterClassW.restype = wintypes.ATOM
    user32.CreateWindowExW.argtypes = [
        DWORD, wintypes.LPCWSTR, wintypes.LPCWSTR, DWORD, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_int, hwnd, wintypes.HMENU, wintypes.HINSTANCE, wintypes.LPVOID,
    ]  # fmt: skip
    user32.CreateWindowExW.restype = hwnd
    user32.DefWindowProcW.argtypes = [hwnd, ctypes.c_uint, wintypes.WPARAM, wintypes.LPARAM]
    user32.DefWindowProcW.restype = LRESULT
    user32.GetMessageW.argtypes = [msg, hwnd, ctypes.c_uint, ctypes.c_uint]
    user32.TranslateMessage.argtypes = [msg]
    user32.DispatchMessageW.argtypes = [msg]
    user32.DispatchMessageW.restype = LRESULT
    user32.PostMessageW.argtypes = [hwnd, ctypes.c_uint, wintypes.WPARAM, wintypes.LPARAM]
    user32.DestroyWindow.argtypes = [hwnd]
    user32.RegisterPowerSettingNotification.argtypes = [wintypes.HANDLE, ctypes.POINTER(GUID), DWORD]
    user32.RegisterPowerSettingNotification.restype = wintypes.HANDLE
    if wtsapi32 is not None:
        wtsapi32.WTSRegisterSessionNotification.argtypes = [hwnd, DWORD]
        wtsapi32.WTSUnRegisterSessionNotification.argtypes = [hwnd]


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
        wtsapi32: Any = None,
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
            try:
                wtsapi32 = ctypes.WinDLL("wtsapi32", use_last_error=True)
            except OSError:
                wtsapi32 = None
            declare_window_api(user32, kernel32, wtsapi32)
        self._user32 = user32
        self._wtsapi32 = wtsapi32
        self._wts_locked: bool | None = None  # the last WTS_SESSION_LOCK / UNLOCK seen; None before any
        self._power_thread: threading.Thread | None = None
        self._power_hwnd = 0
        self._wndproc: Any = None  # the WNDPROC callback, referenced while the window lives
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
        notes = []
        if not self._dpi_aware:
            notes.append("not DPI aware: covers may be misplaced on scaled monitors")
        return Capabilities(
            backend="windows",
            idle=True,
            window_list=True,
            window_pids=True,
            lock=True,
            lock_state=True,
            lock_before_sleep=True,
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
        if self._wts_locked:
            return True  # WTS_SESSION_LOCK: the OS itself says so
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

    # ---- lock before sleep -----------------------------------------------------------------------------
    def watch_sleep(self, before_sleep: Callable[[], None]) -> None:
        """Call ``before_sleep`` on the power thread each time Windows suspends or turns the display off."""
        if self._power_thread is not None:
            raise PlatformError("the power watch runs already")
        ready = threading.Event()
        failure: list[str] = []
        self._power_thread = threading.Thread(
            target=self._power_loop, args=(before_sleep, ready, failure), name="mamori-power", daemon=True
        )
        self._power_thread.start()
        if not ready.wait(5.0):
            raise PlatformError("the power-notification window did not start within 5 s")
        if failure:
            raise PlatformError(failure[0])

    def stop_watching_sleep(self) -> None:
        """Close the power window; its thread's message loop ends (tests, shutdown)."""
        if self._power_hwnd:
            self._user32.PostMessageW(self._power_hwnd, WM_CLOSE, 0, 0)
        if self._power_thread is not None:
            self._power_thread.join(5.0)

    def _power_loop(
        self, before_sleep: Callable[[], None], ready: threading.Event, failure: list[str]
    ) -> None:
        user32 = self._user32

        def wndproc(hwnd: Any, msg: int, wparam: int, lparam: int) -> int:
            try:
                return self._on_message(int(hwnd or 0), int(msg), int(wparam), int(lparam or 0), before_sleep)
            except Exception:  # an exception must not cross back into user32
                logger.exception("power notification failed")
                return 0

        self._wndproc = WNDPROC(wndproc)
        instance = self._kernel32.GetModuleHandleW(None)
        cls = WNDCLASSW()
        cls.lpfnWndProc = self._wndproc
        cls.hInstance = instance
        cls.lpszClassName = POWER_CLASS
        if not user32.RegisterClassW(ctypes.byref(cls)):
            failure.append(f"RegisterClassW failed (error {_last_error()}): no lock before sleep")
            ready.set()
            return
        # A top-level window that is never shown: WM_POWERBROADCAST is not sent to message-only windows.
        hwnd = int(
            user32.CreateWindowExW(0, POWER_CLASS, "Mamori", 0, 0, 0, 0, 0, None, None, instance, None) or 0
        )
        if not hwnd:
            failure.append(f"CreateWindowExW failed (error {_last_error()}): no lock before sleep")
            ready.set()
            return
        self._power_hwnd = hwnd
        if self._wtsapi32 is not None and not self._wtsapi32.WTSRegisterSessionNotification(
            hwnd, NOTIFY_FOR_THIS_SESSION
        ):
            logger.warning("WTSRegisterSessionNotification failed (error %d)", _last_error())
        if not user32.RegisterPowerSettingNotification(
            hwnd, ctypes.byref(GUID_CONSOLE_DISPLAY_STATE), DEVICE_NOTIFY_WINDOW_HANDLE
        ):
            logger.warning("display-state notifications unavailable (error %d)", _last_error())
        ready.set()
        msg = MSG()
        while True:
            result = int(user32.GetMessageW(ctypes.byref(msg), None, 0, 0))
            if result <= 0:  # 0: WM_QUIT; -1: an error
                break
            user32.TranslateMessage(ctypes.byref(msg))
            user32.DispatchMessageW(ctypes.byref(msg))
        self._power_hwnd = 0

    def _on_message(
        self, hwnd: int, msg: int, wparam: int, lparam: int, before_sleep: Callable[[], None]
    ) -> int:
        user32 = self._user32
        if msg == WM_POWERBROADCAST:
            if wparam == PBT_APMSUSPEND:
                before_sleep()
            elif wparam == PBT_POWERSETTINGCHANGE and lparam:
                setting = ctypes.cast(lparam, ctypes.POINTER(POWERBROADCAST_SETTING)).contents
                if bytes(setting.PowerSetting) == bytes(GUID_CONSOLE_DISPLAY_STATE) and setting.Data[0] == 0:
                    before_sleep()  # the display turned off: a Modern Standby PC starts to sleep
            return 1  # TRUE: the broadcast was handled
        if msg == WM_WTSSESSION_CHANGE:
            if wparam == WTS_SESSION_LOCK:
                self._wts_locked = True
            elif wparam == WTS_SESSION_UNLOCK:
                self._wts_locked = False
            return 0
        if msg == WM_CLOSE:
            if self._wtsapi32 is not None:
                self._wtsapi32.WTSUnRegisterSessionNotification(hwnd)
            user32.DestroyWindow(hwnd)
            user32.PostQuitMessage(0)
            return 0
        return int(user32.DefWindowProcW(hwnd, msg, wparam, lparam))
