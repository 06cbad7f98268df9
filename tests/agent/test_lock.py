"""agent/lock.py's lock-and-verify when the lock state cannot be read: a failed lock while running, nothing while
the agent stops (its display connection is closing under the verifying thread)."""

from __future__ import annotations

import threading

import pytest

from agent.lock import SessionLock
from agent.platform.base import PlatformError
from agent.platform.fake import FakeDesktop
from agent.report.stream import EventStream, Kind
from core.clock import FakeClock


class UnreadableDesktop(FakeDesktop):
    """The lock request goes out; asking whether it took effect fails, as on a display that went away."""

    def lock(self) -> None:
        self.lock_requests = getattr(self, "lock_requests", 0) + 1

    def is_locked(self) -> bool:
        raise PlatformError("cannot ask the X server whether a locker holds the keyboard: connection closed")


@pytest.mark.parametrize("stopping", [False, True])
def test_an_unreadable_lock_state_fails_the_lock_unless_the_agent_is_stopping(stopping: bool) -> None:
    stream, stop, failures = EventStream(), threading.Event(), []
    desk = UnreadableDesktop()
    lock = SessionLock(desk, stream, FakeClock(), stop, lambda: failures.append(1))
    if stopping:
        stop.set()
    lock.lock_async("away")
    lock.join(5)
    failed = [dict(e.data) for e in stream.recent() if e.kind is Kind.LOCK_FAILED]
    assert desk.lock_requests == 1
    assert [e for e in stream.recent() if e.kind is Kind.SESSION_LOCKED] == []  # never claimed
    if stopping:
        assert failed == [] and failures == []
    else:
        assert [f["reason"] for f in failed] == ["not_locked"] and failures == [1]
