"""Lock before sleep on macOS, over a scripted AppKit (NSWorkspace's notification center keeps the observers
and posts NSWorkspaceWillSleepNotification to them) and the project's Quartz/login fakes, where
SACLockScreenImmediate locks the session as macOS does. The agent's real protection loop and lock-and-verify
run above it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.platform.macos import MacDesktop
from agent.report.stream import EventStream, Kind
from core.clock import FakeClock
from tests.agent.platform.test_macos import FakeAX, FakeLogin, FakeQuartz
from tests.harness.fakes import RecordingSink, policy

WILL_SLEEP = "NSWorkspaceWillSleepNotification"


class FakeCenter:
    def __init__(self) -> None:
        self.observers: dict[int, tuple[str, Any]] = {}

    def addObserverForName_object_queue_usingBlock_(self, name: str, obj: Any, queue: Any, block: Any) -> int:
        token = len(self.observers) + 1
        self.observers[token] = (name, block)
        return token

    def removeObserver_(self, token: int) -> None:
        del self.observers[token]

    def post(self, name: str) -> None:
        for observed, block in list(self.observers.values()):
            if observed == name:
                block(SimpleNamespace(name=name))


class FakeAppKit:
    NSWorkspaceWillSleepNotification = WILL_SLEEP

    def __init__(self) -> None:
        self.center = FakeCenter()
        workspace = SimpleNamespace(notificationCenter=lambda: self.center)
        self.NSWorkspace = SimpleNamespace(sharedWorkspace=lambda: workspace)


class LockingLogin(FakeLogin):
    """SACLockScreenImmediate locks the session (CGSSessionScreenIsLocked), unless told it does not engage."""

    def __init__(self, quartz: FakeQuartz) -> None:
        super().__init__()
        self.quartz = quartz
        self.engages = True

    def SACLockScreenImmediate(self) -> int:
        result = super().SACLockScreenImmediate()
        if self.engages and self.quartz.session is not None:
            self.quartz.session["CGSSessionScreenIsLocked"] = True
        return result


def start(
    tmp: Path, *, lock_before_sleep: bool = True
) -> tuple[MacDesktop, FakeAppKit, LockingLogin, EventStream]:
    q = FakeQuartz()
    login, appkit = LockingLogin(q), FakeAppKit()
    desk = MacDesktop(q, login, FakeAX(), appkit)
    p = policy()
    p = dataclasses.replace(p, presence=dataclasses.replace(p.presence, lock_before_sleep=lock_before_sleep))
    stream = EventStream()
    rt = build_runtime(AgentConfig(state_dir=tmp), p, desk, stream, FakeClock(), overlay=RecordingSink())
    rt.protection.start()
    return desk, appkit, login, stream


def locks(stream: EventStream) -> list[dict[str, object]]:
    return [dict(e.data) for e in stream.recent() if e.kind in (Kind.SESSION_LOCKED, Kind.LOCK_FAILED)]


def test_will_sleep_locks_and_the_lock_is_verified(tmp_path: Path) -> None:
    desk, appkit, login, stream = start(tmp_path)
    assert desk.capabilities().lock_before_sleep
    assert [name for name, _ in appkit.center.observers.values()] == [WILL_SLEEP]
    appkit.center.post("NSWorkspaceDidWakeNotification")
    assert login.calls == 0
    appkit.center.post(WILL_SLEEP)
    assert login.calls == 1 and desk.is_locked()
    assert locks(stream) == [{"method": "SACLockScreenImmediate"}]
    desk.stop_watching_sleep()
    assert appkit.center.observers == {}


def test_a_lock_that_does_not_engage_or_fails_is_reported(tmp_path: Path) -> None:
    _, appkit, login, stream = start(tmp_path)
    login.engages = False
    appkit.center.post(WILL_SLEEP)
    assert locks(stream) == [{"method": "SACLockScreenImmediate", "reason": "sleep_not_locked"}]
    login.result = -1  # SACLockScreenImmediate returns an error
    appkit.center.post(WILL_SLEEP)
    assert locks(stream)[-1] == {"method": "SACLockScreenImmediate", "reason": "sleep"}


def test_policy_without_lock_before_sleep_does_not_lock(tmp_path: Path) -> None:
    _, appkit, login, stream = start(tmp_path, lock_before_sleep=False)
    appkit.center.post(WILL_SLEEP)
    assert login.calls == 0 and locks(stream) == []


def test_without_appkit_there_is_no_lock_before_sleep() -> None:
    q = FakeQuartz()
    desk = MacDesktop(q, FakeLogin(), FakeAX())
    caps = desk.capabilities()
    assert not caps.lock_before_sleep and any("AppKit" in n for n in caps.notes)


def test_without_the_tray_there_is_no_lock_before_sleep_and_it_says_why(tmp_path: Path) -> None:
    q = FakeQuartz()
    appkit = FakeAppKit()
    desk = MacDesktop(q, LockingLogin(q), FakeAX(), appkit, main_run_loop=False)
    caps = desk.capabilities()
    assert not caps.lock_before_sleep and any("without the tray" in n for n in caps.notes)
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(), desk, EventStream(), FakeClock(), overlay=RecordingSink()
    )
    rt.protection.start()
    assert appkit.center.observers == {}  # nothing observes a notification that would never come
