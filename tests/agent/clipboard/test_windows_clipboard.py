"""The Windows clipboard backend over a scripted user32/kernel32 clipboard (the same functions and calling
conventions; GlobalAlloc hands out real memory, so SetClipboardData reads what the backend wrote), with the
guard judging owners against the Windows desktop backend over the project's fakes (tests/agent/platform)."""

from __future__ import annotations

import ctypes
import queue
from collections.abc import Iterator
from typing import Any

import pytest

from agent.clipboard.base import CLIPBOARD, ClipboardError
from agent.clipboard.guard import ClipboardGuard
from agent.clipboard.windows import CF_UNICODETEXT, GMEM_MOVEABLE, HWND_MESSAGE, WindowsClipboard
from agent.i18n import Translator
from agent.platform.windows import WindowsDesktop
from agent.report.stream import EventStream, Kind
from core.clock import FakeClock
from tests.agent.platform.test_windows import FakeDwmapi, FakeHwnd, FakeKernel32, FakeUser32
from tests.harness.fakes import policy

WM_QUIT = 0x0012
AGENT_PID = 4321


class ClipboardUser32(FakeUser32):
    """FakeUser32 with the clipboard: one owner window, a sequence number, and apps that hold it open."""

    def __init__(self, memory: ClipboardKernel32) -> None:
        super().__init__()
        self.memory = memory
        self.sequence = 1
        self.owner = 0
        self.text: str | None = None
        self.open_by: int | None = None  # the window (0: the calling task) holding the clipboard open
        self.held_by_other = 0  # the next OpenClipboard calls that fail: another app has it open
        self.queue: queue.Queue[tuple[int, int, int, int]] = queue.Queue()
        self.destroyed: list[int] = []
        self.parent: Any = None

    def copy(self, hwnd: int, text: str) -> None:
        """An app copies: OpenClipboard(hwnd), EmptyClipboard, SetClipboardData, CloseClipboard."""
        self.owner, self.text = hwnd, text
        self.sequence += 1

    def GetClipboardSequenceNumber(self) -> int:
        return self.sequence

    def GetClipboardOwner(self) -> int:
        return self.owner

    def OpenClipboard(self, hwnd: Any) -> int:
        if self.held_by_other:
            self.held_by_other -= 1
            return 0
        assert self.open_by is None, "opened twice"
        self.open_by = int(hwnd or 0)
        return 1

    def EmptyClipboard(self) -> int:
        if self.open_by is None:
            return 0
        self.owner, self.text = self.open_by, None
        self.sequence += 1
        return 1

    def SetClipboardData(self, fmt: int, handle: int) -> int:
        assert self.open_by is not None and fmt == CF_UNICODETEXT
        if not self.owner:
            return 0  # opened without a window: EmptyClipboard left no owner and the data is refused
        # CF_UNICODETEXT is NUL-terminated UTF-16 (wchar_t is 16 bits on Windows, 32 here).
        self.text = self.memory.blocks[handle].raw.decode("utf-16-le").split("\0")[0]
        self.sequence += 1
        return handle

    def CloseClipboard(self) -> int:
        assert self.open_by is not None
        self.open_by = None
        return 1

    # the agent's owner window: a message-only window on a thread that pumps messages
    def RegisterClassW(self, ptr: Any) -> int:
        self.wndproc = ptr._obj.lpfnWndProc
        self.class_name = ptr._obj.lpszClassName
        return 0xC002

    def CreateWindowExW(self, ex: int, cls: str, name: str, style: int, *rest: Any) -> int:
        assert cls == self.class_name
        self.parent = rest[4]  # after x, y, width, height: the parent (HWND_MESSAGE: a message-only window)
        return 0x900

    def GetMessageW(self, ptr: Any, hwnd: Any, low: int, high: int) -> int:
        target, msg, wparam, lparam = self.queue.get(timeout=30)
        if msg == WM_QUIT:
            return 0
        m = ptr._obj
        m.hwnd, m.message, m.wParam, m.lParam = target, msg, wparam, lparam
        return 1

    def TranslateMessage(self, ptr: Any) -> int:
        return 0

    def DispatchMessageW(self, ptr: Any) -> int:
        m = ptr._obj
        return int(self.wndproc(m.hwnd, m.message, m.wParam, m.lParam))

    def DefWindowProcW(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int:
        return 0

    def PostMessageW(self, hwnd: int, msg: int, wparam: int, lparam: int) -> int:
        self.queue.put((hwnd, msg, wparam, lparam))
        return 1

    def PostQuitMessage(self, code: int) -> None:
        self.queue.put((0, WM_QUIT, code, 0))

    def DestroyWindow(self, hwnd: int) -> int:
        self.destroyed.append(hwnd)
        return 1

    def pid_of(self, hwnd: int) -> int:
        return AGENT_PID if hwnd == 0x900 else self.windows[hwnd].pid

    def GetWindowThreadProcessId(self, hwnd: int, ptr: Any) -> int:
        ptr._obj.value = self.pid_of(hwnd)
        return 77


class ClipboardKernel32(FakeKernel32):
    def __init__(self) -> None:
        super().__init__()
        self.blocks: dict[int, ctypes.Array[ctypes.c_char]] = {}

    def GetModuleHandleW(self, name: Any) -> int:
        return 0x400000

    def GlobalAlloc(self, flags: int, size: int) -> int:
        assert flags == GMEM_MOVEABLE
        block = ctypes.create_string_buffer(size)
        self.blocks[ctypes.addressof(block)] = block
        return ctypes.addressof(block)

    def GlobalLock(self, handle: int) -> int:
        return handle

    def GlobalUnlock(self, handle: int) -> int:
        return 1

    def GlobalFree(self, handle: int) -> int:
        self.blocks.pop(handle)
        return 0


Setup = tuple[WindowsClipboard, ClipboardUser32, ClipboardGuard, list[str], EventStream]


@pytest.fixture
def setup() -> Iterator[Setup]:
    kernel32 = ClipboardKernel32()
    user32 = ClipboardUser32(kernel32)
    user32.windows = {
        2: FakeHwnd("顧客台帳.xlsx - Excel", 20, (0, 0, 800, 600), cls="XLMAIN"),
        3: FakeHwnd("memo.txt - Notepad", 30, (10, 10, 300, 300)),
        # Excel owns the clipboard with a hidden window of its own process.
        4: FakeHwnd("", 20, (0, 0, 0, 0), visible=False, cls="CLIPBRDWNDCLASS"),
        5: FakeHwnd("", 30, (0, 0, 0, 0), visible=False, cls="CLIPBRDWNDCLASS"),
    }
    user32.z_order = [2, 3, 4, 5]
    names = {20: "EXCEL.EXE", 30: "notepad.exe"}
    desktop = WindowsDesktop(
        user32, kernel32, FakeDwmapi(user32), process_name=lambda pid: names.get(pid, "")
    )
    clipboard = WindowsClipboard(
        user32, kernel32, process_name=lambda pid: names.get(pid, ""), sleep=lambda _s: None
    )
    reasons: list[str] = []
    stream = EventStream()
    guard = ClipboardGuard(
        clipboard,
        desktop,
        policy,
        lambda: reasons,
        stream=stream,
        clock=FakeClock(),
        translator=Translator("ja"),
    )
    yield clipboard, user32, guard, reasons, stream
    clipboard.close()


def test_the_owner_is_the_process_of_the_window_that_copied(setup: Setup) -> None:
    clipboard, user32, _, _, _ = setup
    user32.copy(4, "03-1234-5678")
    [owner] = clipboard.owners()
    assert (owner.selection, owner.pid, owner.process_name, owner.ours) == (CLIPBOARD, 20, "EXCEL.EXE", False)
    assert owner.serial == user32.sequence
    user32.copy(0, "no owner window")
    assert clipboard.owners()[0].pid is None


def test_excel_content_is_replaced_by_the_notice_while_away_notepad_content_is_not(setup: Setup) -> None:
    clipboard, user32, guard, reasons, stream = setup
    user32.copy(5, "memo")
    reasons.append("away")
    guard.step()
    assert user32.text == "memo"  # notepad's content stays
    user32.copy(4, "03-1234-5678")
    guard.step()
    assert user32.text is not None and user32.text.startswith("【Mamori】")
    assert "03-1234-5678" not in user32.text and user32.open_by is None
    assert user32.owner == 0x900 and user32.parent == HWND_MESSAGE  # the agent's message-only window owns it
    assert clipboard.owners()[0].ours
    guard.step()
    events = [dict(e.data) for e in stream.recent() if e.kind is Kind.CLIPBOARD_CLEARED]
    assert events == [{"selection": "clipboard", "reason": "away", "rules": ["ledger"], "action": "notice"}]


def test_clear_mode_empties_and_a_busy_clipboard_is_retried_then_an_error(setup: Setup) -> None:
    clipboard, user32, _, _, _ = setup
    user32.copy(4, "03-1234-5678")
    user32.held_by_other = 3
    clipboard.take(CLIPBOARD, None)
    assert user32.text is None and user32.owner == 0x900
    user32.held_by_other = 100
    with pytest.raises(ClipboardError, match="another app holds it"):
        clipboard.take(CLIPBOARD, "notice")


def test_closing_ends_the_owner_windows_thread(setup: Setup) -> None:
    clipboard, user32, _, _, _ = setup
    clipboard.take(CLIPBOARD, "notice")
    thread = clipboard._thread
    assert thread is not None and thread.is_alive()
    clipboard.close()
    assert not thread.is_alive() and user32.destroyed == [0x900]
