"""The Windows clipboard (ctypes): who owns it, and taking it over with a notice.

- Owner: ``GetClipboardSequenceNumber`` changes with every change of content (one cheap call per look); when it
  changed, ``GetClipboardOwner`` names the window that last emptied the clipboard and
  ``GetWindowThreadProcessId`` its process. Excel and browsers own the clipboard with hidden windows of the same
  process, so the owner's pid finds their visible windows for title rules.
- Take over: ``OpenClipboard`` with the agent's own window (retried: another app may hold it open for a moment),
  ``EmptyClipboard``, then the notice as ``CF_UNICODETEXT`` (``GlobalAlloc(GMEM_MOVEABLE)`` memory handed to
  ``SetClipboardData``, which the system owns afterwards), ``CloseClipboard``. The window matters: opened
  without one, ``EmptyClipboard`` leaves the clipboard without owner and ``SetClipboardData`` fails. It is a
  message-only window on its own thread that pumps messages, because Windows sends the owner
  ``WM_DESTROYCLIPBOARD`` when the next app empties the clipboard and that app waits for the answer.

Windows has no primary selection. Clipboard history (Win+V) and cloud clipboard keep their own copies, which no
API lets another app delete; IT turns them off by policy (docs/how-protection-works.md).

``user32`` and ``kernel32`` are injected; tests pass scripted fakes with the same functions.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.clipboard.base import CLIPBOARD, ClipboardError, Owner, Selection
from agent.platform.windows import MSG, WNDCLASSW, WNDPROC, declare_window_api

CF_UNICODETEXT = 13
HWND_MESSAGE = -3
WM_CLOSE = 0x0010
OWNER_CLASS = "MamoriClipboardOwner"
GMEM_MOVEABLE = 0x0002
OPEN_ATTEMPTS = 10
OPEN_RETRY = 0.02


def _last_error() -> int:
    if sys.platform == "win32":
        return ctypes.get_last_error()
    return 0


def _declare(user32: Any, kernel32: Any) -> None:
    """Handles and pointers are 64-bit: without these ctypes would pass and return them as 32-bit ints."""
    from ctypes import wintypes

    user32.GetClipboardOwner.restype = wintypes.HWND
    user32.GetWindowThreadProcessId.argtypes = [wintypes.HWND, ctypes.POINTER(ctypes.c_uint32)]
    user32.OpenClipboard.argtypes = [wintypes.HWND]
    user32.SetClipboardData.argtypes = [ctypes.c_uint, wintypes.HANDLE]
    user32.SetClipboardData.restype = wintypes.HANDLE
    kernel32.GlobalAlloc.argtypes = [ctypes.c_uint, ctypes.c_size_t]
    kernel32.GlobalAlloc.restype = wintypes.HGLOBAL
    kernel32.GlobalLock.argtypes = [wintypes.HGLOBAL]
    kernel32.GlobalLock.restype = ctypes.c_void_p
    kernel32.GlobalUnlock.argtypes = [wintypes.HGLOBAL]
    kernel32.GlobalFree.argtypes = [wintypes.HGLOBAL]


def _psutil_name(pid: int) -> str:
    import psutil

    try:
        return str(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        return ""


class WindowsClipboard:
    name = "windows"
    selections: tuple[Selection, ...] = (CLIPBOARD,)
    idle_poll = 1.0  # only a clipboard manager's take-over needs the owner before it; 1 s notices a stop

    def __init__(
        self,
        user32: Any = None,
        kernel32: Any = None,
        process_name: Callable[[int], str] = _psutil_name,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if user32 is None or kernel32 is None:
            if sys.platform != "win32":
                raise ClipboardError("the Windows clipboard backend runs only on Windows")
            user32 = ctypes.WinDLL("user32", use_last_error=True)
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            _declare(user32, kernel32)
            declare_window_api(user32, kernel32, None)  # the owner window's calls
        self._user32 = user32
        self._kernel32 = kernel32
        self._process_name = process_name
        self._sleep = sleep
        self._lock = threading.Lock()
        self._owner: Owner | None = None
        self._ours: int | None = None  # the sequence number our own take-over left
        self._hwnd = 0  # the agent's clipboard owner window, once started
        self._thread: threading.Thread | None = None
        self._wndproc: Any = None  # the WNDPROC callback, referenced while the window lives

    def owners(self) -> list[Owner]:
        with self._lock:
            serial = int(self._user32.GetClipboardSequenceNumber())
            if self._owner is not None and self._owner.serial == serial:
                return [self._owner]
            if serial == self._ours:
                self._owner = Owner(CLIPBOARD, serial, ours=True)
                return [self._owner]
            hwnd = int(self._user32.GetClipboardOwner() or 0)
            pid: int | None = None
            if hwnd:
                value = ctypes.c_uint32(0)
                self._user32.GetWindowThreadProcessId(hwnd, ctypes.byref(value))
                pid = int(value.value) or None
            name = self._process_name(pid) if pid else ""
            self._owner = Owner(CLIPBOARD, serial, pid=pid, process_name=name)
            return [self._owner]

    def take(self, selection: Selection, notice: str | None) -> None:
        with self._lock:
            self._open()
            try:
                if not self._user32.EmptyClipboard():
                    raise ClipboardError(f"EmptyClipboard failed (error {_last_error()})", selection)
                if notice is not None:
                    self._set_text(notice)
            finally:
                self._user32.CloseClipboard()
            self._ours = int(self._user32.GetClipboardSequenceNumber())
            self._owner = None

    def _open(self) -> None:
        owner = self._owner_window()
        for _ in range(OPEN_ATTEMPTS):
            if self._user32.OpenClipboard(owner):
                return
            self._sleep(OPEN_RETRY)
        raise ClipboardError(f"OpenClipboard failed: another app holds it (error {_last_error()})", CLIPBOARD)

    def _set_text(self, text: str) -> None:
        data = (text + "\0").encode("utf-16-le")
        handle = self._kernel32.GlobalAlloc(GMEM_MOVEABLE, len(data))
        if not handle:
            raise ClipboardError(f"GlobalAlloc failed (error {_last_error()})", CLIPBOARD)
        pointer = self._kernel32.GlobalLock(handle)
        if not pointer:
            self._kernel32.GlobalFree(handle)
            raise ClipboardError(f"GlobalLock failed (error {_last_error()})", CLIPBOARD)
        ctypes.memmove(pointer, data, len(data))
        self._kernel32.GlobalUnlock(handle)
        if not self._user32.SetClipboardData(CF_UNICODETEXT, handle):
            self._kernel32.GlobalFree(handle)  # still ours when SetClipboardData fails
            raise ClipboardError(f"SetClipboardData failed (error {_last_error()})", CLIPBOARD)

    def _owner_window(self) -> int:
        if self._hwnd:
            return self._hwnd
        ready = threading.Event()
        failure: list[str] = []
        self._thread = threading.Thread(
            target=self._window_loop, args=(ready, failure), name="mamori-clipboard-owner", daemon=True
        )
        self._thread.start()
        if not ready.wait(5.0) or failure:
            raise ClipboardError(
                failure[0] if failure else "the clipboard owner window did not start", CLIPBOARD
            )
        return self._hwnd

    def _window_loop(self, ready: threading.Event, failure: list[str]) -> None:
        user32 = self._user32

        def wndproc(hwnd: Any, msg: int, wparam: int, lparam: int) -> int:
            if int(msg) == WM_CLOSE:
                user32.DestroyWindow(hwnd)
                user32.PostQuitMessage(0)
                return 0
            return int(user32.DefWindowProcW(hwnd, msg, wparam, lparam) or 0)

        self._wndproc = WNDPROC(wndproc)
        instance = self._kernel32.GetModuleHandleW(None)
        cls = WNDCLASSW()
        cls.lpfnWndProc = self._wndproc
        cls.hInstance = instance
        cls.lpszClassName = OWNER_CLASS
        if not user32.RegisterClassW(ctypes.byref(cls)):
            failure.append(
                f"RegisterClassW failed (error {_last_error()}): the clipboard cannot be taken over"
            )
            ready.set()
            return
        hwnd = int(
            user32.CreateWindowExW(
                0, OWNER_CLASS, "Mamori", 0, 0, 0, 0, 0, HWND_MESSAGE, None, instance, None
            )
            or 0
        )
        if not hwnd:
            failure.append(
                f"CreateWindowExW failed (error {_last_error()}): the clipboard cannot be taken over"
            )
            ready.set()
            return
        self._hwnd = hwnd
        ready.set()
        msg = MSG()
        while int(user32.GetMessageW(ctypes.byref(msg), None, 0, 0)) > 0:
            user32.TranslateMessage(ctypes.byref(msg))
            user32.DispatchMessageW(ctypes.byref(msg))
        self._hwnd = 0

    def close(self) -> None:
        if self._hwnd:
            self._user32.PostMessageW(self._hwnd, WM_CLOSE, 0, 0)
        if self._thread is not None:
            self._thread.join(5.0)
