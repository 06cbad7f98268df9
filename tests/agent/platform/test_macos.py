"""The macOS backend over a scripted fake of the Quartz functions and constants it uses (pyobjc's shapes:
window infos are dicts keyed by the kCGWindow* constants, CGDisplayBounds returns a CGRect)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from agent.decide.match import match_windows
from agent.platform.base import Monitor, PlatformError, Rect
from agent.platform.macos import MacDesktop
from policy.model import CustomerApp
from tests.harness.fakes import policy


class FakeQuartz:
    kCGEventSourceStateHIDSystemState = 1
    kCGAnyInputEventType = 0xFFFFFFFF
    kCGWindowListOptionOnScreenOnly = 1
    kCGWindowListExcludeDesktopElements = 16
    kCGNullWindowID = 0
    kCGWindowLayer = "kCGWindowLayer"
    kCGWindowBounds = "kCGWindowBounds"
    kCGWindowNumber = "kCGWindowNumber"
    kCGWindowName = "kCGWindowName"
    kCGWindowOwnerName = "kCGWindowOwnerName"
    kCGWindowOwnerPID = "kCGWindowOwnerPID"
    kCGWindowIsOnscreen = "kCGWindowIsOnscreen"

    def __init__(self) -> None:
        self.idle = 0.0
        self.infos: list[dict[str, Any]] = []
        self.displays = {1: (0, 0, 1512, 982), 2: (1512, -200, 2560, 1440)}
        self.session: dict[str, Any] | None = {"kCGSSessionOnConsoleKey": True}
        self.screen_capture = True
        self.calls: list[tuple[Any, ...]] = []

    def CGEventSourceSecondsSinceLastEventType(self, state: int, kind: int) -> float:
        self.calls.append(("idle", state, kind))
        return self.idle

    def CGWindowListCopyWindowInfo(self, options: int, relative: int) -> list[dict[str, Any]]:
        self.calls.append(("list", options, relative))
        return self.infos

    def CGGetActiveDisplayList(
        self, max_displays: int, ids: None, count: None
    ) -> tuple[int, tuple[int, ...], int]:
        return 0, tuple(self.displays), len(self.displays)

    def CGMainDisplayID(self) -> int:
        return 1

    def CGDisplayBounds(self, display: int) -> Any:
        x, y, w, h = self.displays[display]
        return SimpleNamespace(
            origin=SimpleNamespace(x=float(x), y=float(y)), size=SimpleNamespace(width=w, height=h)
        )

    def CGSessionCopyCurrentDictionary(self) -> dict[str, Any] | None:
        return self.session

    def CGPreflightScreenCaptureAccess(self) -> bool:
        return self.screen_capture


class FakeLogin:
    def __init__(self) -> None:
        self.calls = 0
        self.result = 0

    def SACLockScreenImmediate(self) -> int:
        self.calls += 1
        return self.result


class FakeAX:
    trusted = 1

    def AXIsProcessTrusted(self) -> int:
        return self.trusted


def info(
    num: int, owner: str, title: str | None, bounds: tuple[float, ...], layer: int = 0
) -> dict[str, Any]:
    x, y, w, h = bounds
    d: dict[str, Any] = {
        "kCGWindowNumber": num,
        "kCGWindowOwnerName": owner,
        "kCGWindowOwnerPID": 500 + num,
        "kCGWindowLayer": layer,
        "kCGWindowBounds": {"X": x, "Y": y, "Width": w, "Height": h},
        "kCGWindowIsOnscreen": True,
    }
    if title is not None:
        d["kCGWindowName"] = title
    return d


@pytest.fixture
def mac() -> tuple[MacDesktop, FakeQuartz, FakeLogin]:
    q, login = FakeQuartz(), FakeLogin()
    return MacDesktop(q, login, FakeAX()), q, login


def test_idle_from_the_hid_system(mac) -> None:
    desk, q, _ = mac
    q.idle = 42.5
    assert desk.idle_seconds() == 42.5
    assert q.calls[-1] == ("idle", 1, 0xFFFFFFFF)


def test_windows_layer_zero_front_to_back_reversed_and_matched(mac) -> None:
    desk, q, _ = mac
    q.infos = [
        info(7, "Google Chrome", "Acme – Salesforce", (100.0, 50.0, 900.0, 700.0)),
        info(8, "Window Server", "Menubar", (0, 0, 1512, 24), layer=25),
        info(9, "Microsoft Excel", "顧客台帳.xlsx", (1512, -200, 2560, 1440)),
    ]
    windows = desk.windows()
    assert [w.id for w in windows] == [9, 7]  # menubar layer skipped; topmost last
    chrome = windows[-1]
    assert chrome.active and chrome.rect == Rect(100, 50, 900, 700) and chrome.pid == 507
    assert windows[0].fullscreen  # exactly the second display
    # macOS reports app names ("Google Chrome"), so bare executable names do not match; globs do.
    assert match_windows(policy().customer_apps, windows) == []
    rules = (
        CustomerApp("crm", processes=("*chrome*",), title=re.compile("salesforce", re.I)),
        CustomerApp("ledger", processes=("*excel*",), title=re.compile("顧客台帳")),
    )
    assert [(m.window.id, m.rule) for m in match_windows(rules, windows)] == [(9, "ledger"), (7, "crm")]
    assert q.calls[-1] == ("list", 17, 0)


def test_missing_screen_recording_permission_means_no_window_list(mac) -> None:
    desk, q, _ = mac
    q.screen_capture = False
    caps = desk.capabilities()
    assert not caps.window_list and "Screen Recording" in caps.notes[0]


def test_monitors_and_lock_state(mac) -> None:
    desk, q, _ = mac
    assert desk.monitors() == [
        Monitor(Rect(0, 0, 1512, 982), primary=True),
        Monitor(Rect(1512, -200, 2560, 1440), primary=False),
    ]
    assert not desk.is_locked()
    q.session = {"kCGSSessionOnConsoleKey": True, "CGSSessionScreenIsLocked": 1}
    assert desk.is_locked()
    q.session = {"kCGSSessionOnConsoleKey": False}
    assert desk.is_locked()


def test_lock_uses_sac_lock_screen_immediate(mac) -> None:
    desk, _, login = mac
    desk.lock()
    assert login.calls == 1
    login.result = 5
    with pytest.raises(PlatformError, match="returned 5"):
        desk.lock()
    no_login = MacDesktop(FakeQuartz(), None, FakeAX())
    assert not no_login.capabilities().lock
    with pytest.raises(PlatformError, match="login framework"):
        no_login.lock()
