"""The macOS pasteboard backend over a scripted AppKit (NSPasteboard with a change count, NSWorkspace with a
frontmost app), with the guard judging owners against the macOS desktop backend over the project's fakes."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from agent.clipboard.guard import ClipboardGuard
from agent.clipboard.macos import MacClipboard
from agent.i18n import Translator
from agent.platform.macos import MacDesktop
from agent.report.stream import EventStream, Kind
from core.clock import FakeClock
from policy.model import CustomerApp, Policy
from tests.agent.platform.test_macos import FakeAX, FakeLogin, FakeQuartz, info
from tests.harness.fakes import policy


class FakePasteboard:
    NSPasteboardTypeString = "public.utf8-plain-text"

    def __init__(self) -> None:
        self.count = 10
        self.text: str | None = None

    def changeCount(self) -> int:
        return self.count

    def clearContents(self) -> int:
        self.count += 1
        self.text = None
        return self.count

    def setString_forType_(self, text: str, kind: str) -> bool:
        assert kind == self.NSPasteboardTypeString
        self.text = text
        return True


class FakeApp:
    def __init__(self, pid: int, name: str) -> None:
        self.pid, self.name = pid, name

    def processIdentifier(self) -> int:
        return self.pid

    def localizedName(self) -> str:
        return self.name


class FakeAppKit:
    NSPasteboardTypeString = FakePasteboard.NSPasteboardTypeString

    def __init__(self) -> None:
        self.board = FakePasteboard()
        self.front = FakeApp(509, "Microsoft Excel")
        self.NSPasteboard = SimpleNamespace(generalPasteboard=lambda: self.board)
        self.NSWorkspace = SimpleNamespace(
            sharedWorkspace=lambda: SimpleNamespace(frontmostApplication=lambda: self.front)
        )

    def copy(self, app: FakeApp, text: str) -> None:
        """Cmd+C in the app in front: the pasteboard's change count moves."""
        self.front = app
        self.board.count += 1
        self.board.text = text


def mac_policy() -> Policy:
    rules = (CustomerApp("ledger", processes=("*excel*",), title=re.compile("顧客台帳")),)
    return Policy(schema=1, id="mac", version=1, customer_apps=rules, presence=policy().presence)


def build() -> tuple[FakeAppKit, ClipboardGuard, list[str], EventStream]:
    q = FakeQuartz()
    q.infos = [
        info(9, "Microsoft Excel", "顧客台帳.xlsx", (0, 0, 800, 600)),  # pid 509
        info(3, "TextEdit", "memo.txt", (10, 10, 300, 300)),  # pid 503
    ]
    appkit = FakeAppKit()
    reasons: list[str] = []
    stream = EventStream()
    guard = ClipboardGuard(
        MacClipboard(appkit),
        MacDesktop(q, FakeLogin(), FakeAX()),
        mac_policy,
        lambda: reasons,
        stream=stream,
        clock=FakeClock(),
        translator=Translator("en"),
    )
    return appkit, guard, reasons, stream


def test_a_copy_from_the_excel_in_front_is_replaced_while_away() -> None:
    appkit, guard, reasons, stream = build()
    textedit = FakeApp(503, "TextEdit")
    appkit.copy(textedit, "memo")
    guard.step()
    reasons.append("away")
    guard.step()
    assert appkit.board.text == "memo"  # TextEdit's copy stays
    appkit.copy(FakeApp(509, "Microsoft Excel"), "03-1234-5678")
    guard.step()
    text: Any = appkit.board.text
    assert text.startswith("[Mamori]") and "03-1234-5678" not in text
    guard.step()  # the notice is the agent's own: not taken again
    events = [dict(e.data) for e in stream.recent() if e.kind is Kind.CLIPBOARD_CLEARED]
    assert events == [{"selection": "clipboard", "reason": "away", "rules": ["ledger"], "action": "notice"}]


def test_the_stated_limit_the_app_in_front_is_taken_as_the_writer() -> None:
    appkit, guard, reasons, _ = build()
    reasons.append("share")
    # A background script writes the pasteboard while Excel is in front: judged as Excel's (the safe side)...
    appkit.board.count += 1
    appkit.board.text = "from pbcopy"
    guard.step()
    assert appkit.board.text is not None and appkit.board.text.startswith("[Mamori]")
    # ...and a customer number copied by a background process while TextEdit is in front is not seen as one.
    appkit.front = FakeApp(503, "TextEdit")
    appkit.board.count += 1
    appkit.board.text = "03-1234-5678"
    guard.step()
    assert appkit.board.text == "03-1234-5678"
