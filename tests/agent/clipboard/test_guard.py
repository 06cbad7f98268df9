"""The clipboard guard over a scripted clipboard (owners set by hand, take-overs recorded) and the fake desktop."""

from __future__ import annotations

import dataclasses

import pytest

from agent.clipboard.base import CLIPBOARD, PRIMARY, ClipboardError, Owner, Selection
from agent.clipboard.decide import clearing_reason, inherited_rule, owner_rule, selection_rule
from agent.clipboard.guard import ACTIVE_TICK, ClipboardGuard, notice_text
from agent.i18n import Translator
from agent.platform.base import PlatformError, Window
from agent.platform.fake import FakeDesktop
from agent.report.events import Context, build_record
from agent.report.stream import EventStream, Kind
from core.clock import FakeClock
from core.records import validate_record
from policy.model import Policy
from tests.harness.fakes import policy, window

LEDGER = window(1, "顧客台帳 - Excel", "EXCEL.EXE")  # pid 1001
NOTES = window(2, "memo.txt - Notepad", "notepad.exe")  # pid 1002
CHROME_MAIL = window(3, "Inbox - Gmail", "chrome")  # pid 1003: chrome, but no Salesforce title


class ScriptedClipboard:
    """Selections owned by whoever the test says; ``take`` makes the agent the owner and records the notice."""

    name = "scripted"
    selections: tuple[Selection, ...] = (CLIPBOARD, PRIMARY)
    idle_poll = 0.75

    def __init__(self) -> None:
        self._serial = 0
        self.current: dict[Selection, Owner] = {s: self._owner(s) for s in self.selections}
        self.content: dict[Selection, str | None] = {}
        self.takes: list[tuple[Selection, str | None]] = []
        self.fail: str | None = None

    def _owner(self, selection: Selection, **kw: object) -> Owner:
        self._serial += 1
        return Owner(selection, self._serial, **kw)  # type: ignore[arg-type]

    def copy(self, selection: Selection, pid: int | None, name: str, text: str) -> None:
        self.current[selection] = self._owner(selection, pid=pid, process_name=name)
        self.content[selection] = text

    def owners(self) -> list[Owner]:
        if self.fail:
            raise ClipboardError(self.fail)
        return [self.current[s] for s in self.selections]

    def take(self, selection: Selection, notice: str | None) -> None:
        if self.fail:
            raise ClipboardError(self.fail, selection)
        self.takes.append((selection, notice))
        self.current[selection] = self._owner(selection, pid=1, ours=True)
        self.content[selection] = notice

    def close(self) -> None:
        pass


class Setup:
    def __init__(self, the_policy: Policy | None = None) -> None:
        self.clipboard = ScriptedClipboard()
        self.desktop = FakeDesktop([LEDGER, NOTES, CHROME_MAIL])
        self.stream = EventStream()
        self.reasons: list[str] = []
        self.degraded: list[tuple[str, str]] = []
        self.policy = the_policy or policy()
        self.guard = ClipboardGuard(
            self.clipboard,
            self.desktop,
            lambda: self.policy,
            lambda: self.reasons,
            stream=self.stream,
            clock=FakeClock(),
            translator=Translator("ja"),
            report_degraded=lambda cap, reason, _detail: self.degraded.append((cap, reason)),
        )

    def events(self) -> list[dict[str, object]]:
        return [dict(e.data) for e in self.stream.recent() if e.kind is Kind.CLIPBOARD_CLEARED]


def test_customer_content_is_replaced_by_the_notice_once_protection_starts() -> None:
    s = Setup()
    s.clipboard.copy(CLIPBOARD, 1001, "EXCEL.EXE", "03-1234-5678")
    s.clipboard.copy(PRIMARY, 1001, "EXCEL.EXE", "03-1234-5678")
    assert s.guard.step() == 0.75  # the backend's idle poll
    assert s.clipboard.takes == []  # not away: the worker may paste what they copied
    s.reasons = ["step_away"]
    assert s.guard.step() == ACTIVE_TICK
    assert [sel for sel, _ in s.clipboard.takes] == [CLIPBOARD, PRIMARY]
    notice = s.clipboard.content[CLIPBOARD]
    assert notice is not None and notice.startswith("【Mamori】") and "[Mamori]" in notice
    assert s.events() == [
        {"selection": "clipboard", "reason": "step_away", "rules": ["ledger"], "action": "notice"},
        {"selection": "primary", "reason": "step_away", "rules": ["ledger"], "action": "notice"},
    ]
    for _ in range(3):  # the agent's own notice is never taken again
        s.guard.step()
    s.reasons = []
    s.guard.step()  # back: nothing is given back to the customer app
    assert len(s.clipboard.takes) == 2 and s.clipboard.content[CLIPBOARD] == notice
    assert s.guard.status()["cleared"] == 2


def test_other_apps_content_and_non_clearing_reasons_are_left_alone() -> None:
    s = Setup()
    s.clipboard.copy(CLIPBOARD, 1002, "notepad.exe", "memo")
    s.clipboard.copy(PRIMARY, 1003, "chrome", "mail")  # chrome matches crm's process, not its title
    s.reasons = ["away", "share", "posture"]
    s.guard.step()
    assert s.clipboard.takes == []
    s.reasons = ["ack"]  # a pending acknowledgement covers windows but is no clipboard risk
    s.clipboard.copy(CLIPBOARD, 1001, "EXCEL.EXE", "03-1234-5678")
    s.guard.step()
    assert s.clipboard.takes == []


def test_a_copy_made_while_away_is_taken_and_clear_mode_leaves_nothing() -> None:
    text = policy().presence
    s = Setup(dataclasses.replace(policy(), presence=dataclasses.replace(text, clipboard="clear")))
    s.reasons = ["share"]
    s.guard.step()
    s.clipboard.copy(CLIPBOARD, 1001, "EXCEL.EXE", "03-1234-5678")
    s.guard.step()
    assert s.clipboard.takes == [(CLIPBOARD, None)]
    assert s.events()[0]["action"] == "clear" and s.events()[0]["reason"] == "share"
    s.clipboard.copy(CLIPBOARD, 1001, "EXCEL.EXE", "03-9999-0000")  # and again
    s.guard.step()
    assert s.clipboard.takes == [(CLIPBOARD, None), (CLIPBOARD, None)]


def test_off_mode_takes_nothing() -> None:
    text = policy().presence
    s = Setup(dataclasses.replace(policy(), presence=dataclasses.replace(text, clipboard="off")))
    s.clipboard.copy(CLIPBOARD, 1001, "EXCEL.EXE", "03-1234-5678")
    s.reasons = ["away"]
    s.guard.step()
    assert s.clipboard.takes == []


def test_a_clipboard_manager_that_took_over_from_the_customer_app_is_customer_data() -> None:
    s = Setup()
    s.clipboard.copy(CLIPBOARD, 1001, "EXCEL.EXE", "03-1234-5678")
    s.guard.step()  # seen while present: excel owns it
    s.clipboard.copy(CLIPBOARD, 4242, "xfce4-clipman", "03-1234-5678")  # excel exited, the manager keeps it
    s.guard.step()
    s.reasons = ["away"]
    s.guard.step()
    assert s.clipboard.takes and s.events()[0]["rules"] == ["ledger"]
    # A manager that took over from an ordinary app is ordinary.
    t = Setup()
    t.clipboard.copy(CLIPBOARD, 1002, "notepad.exe", "memo")
    t.guard.step()
    t.clipboard.copy(CLIPBOARD, 4242, "xfce4-clipman", "memo")
    t.reasons = ["away"]
    t.guard.step()
    assert t.clipboard.takes == []


def test_failures_are_reported_as_degraded_and_a_failing_window_list_falls_back_to_the_process() -> None:
    s = Setup()
    s.clipboard.copy(CLIPBOARD, 1001, "EXCEL.EXE", "03-1234-5678")
    s.reasons = ["away"]
    s.clipboard.fail = "OpenClipboard failed: another app holds it"
    s.guard.step()
    assert s.degraded == [("clipboard", "query_failed")]
    s.clipboard.fail = None

    def broken() -> list[Window]:
        raise PlatformError("window list failed")

    s.desktop.windows = broken  # type: ignore[method-assign]
    s.guard.step()  # excel matches "ledger" by process alone
    assert s.events()[0]["rules"] == ["ledger"]


def test_owner_rule_uses_the_cover_rules() -> None:
    rules = policy().customer_apps
    windows = [LEDGER, NOTES, CHROME_MAIL, dataclasses.replace(LEDGER, id=9, minimized=True, pid=77)]
    excel = Owner(CLIPBOARD, 1, pid=1001, process_name="EXCEL.EXE")
    assert owner_rule(excel, windows, rules) == "ledger"
    # X11: an unmapped owner window of the same client, found through window_ids; a minimized ledger counts.
    assert owner_rule(Owner(CLIPBOARD, 1, window_ids=frozenset({9})), windows, rules) == "ledger"
    assert owner_rule(Owner(CLIPBOARD, 1, pid=1003, process_name="chrome"), windows, rules) is None
    # No window known: the process alone (crm names chrome), not a title-only rule.
    assert owner_rule(Owner(CLIPBOARD, 1, pid=5, process_name="chrome"), [], rules) == "crm"
    assert owner_rule(Owner(CLIPBOARD, 1, pid=5, process_name="xclip"), [], rules) is None
    assert owner_rule(Owner(CLIPBOARD, 1), windows, rules) is None  # nobody owns it
    assert owner_rule(dataclasses.replace(excel, ours=True), windows, rules) is None
    manager = Owner(CLIPBOARD, 2, pid=9, process_name="CopyQ")
    assert inherited_rule(manager, excel, "ledger") == "ledger"
    assert inherited_rule(manager, excel, None) is None
    assert inherited_rule(Owner(CLIPBOARD, 2, pid=9, process_name="gedit"), excel, "ledger") is None


@pytest.mark.parametrize(
    ("active", "expected"),
    [
        ([], None),
        (["ack"], None),
        (["away"], "away"),
        (["ack", "share"], "share"),
        (["away", "lock_failed"], "lock_failed"),
    ],
)
def test_clearing_reason(active: list[str], expected: str | None) -> None:
    assert clearing_reason(active) == expected


def test_the_event_validates_and_carries_no_content() -> None:
    s = Setup()
    s.clipboard.copy(CLIPBOARD, 1001, "EXCEL.EXE", "03-1234-5678")
    s.reasons = ["away"]
    s.guard.step()
    event = next(e for e in s.stream.recent() if e.kind is Kind.CLIPBOARD_CLEARED)
    record = build_record(event, Context(rule_names=frozenset({"ledger", "crm"})))
    assert validate_record(record, require_device=False, require_sequence=False) == []
    assert record["unmapped"] == {
        "selection": "clipboard",
        "reason": "away",
        "rules": ["ledger"],
        "action": "notice",
    }
    assert "03-1234-5678" not in str(record)


def test_notice_is_bilingual_in_the_workers_language_first() -> None:
    en = notice_text(Translator("en")).splitlines()
    assert en[0].startswith("[Mamori]") and en[1].startswith("【Mamori】")


def test_a_manager_is_judged_by_the_app_the_backend_saw_before_it() -> None:
    rules = policy().customer_apps
    excel_gone = Owner(CLIPBOARD, 1, pid=4000, process_name="EXCEL.EXE")  # exited: no window left
    manager = Owner(CLIPBOARD, 2, pid=9, process_name="parcellite", previous=excel_gone)
    assert selection_rule(manager, [NOTES], rules) == "ledger"
    notes = Owner(CLIPBOARD, 1, pid=1002, process_name="notepad.exe")
    assert selection_rule(dataclasses.replace(manager, previous=notes), [NOTES], rules) is None
    # an ordinary app is never judged by who owned the clipboard before it
    assert selection_rule(dataclasses.replace(notes, previous=excel_gone), [NOTES], rules) is None
