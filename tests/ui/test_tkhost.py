"""The Tk thread host: a Tk that cannot start says so every time it is asked, not only the first time."""

from __future__ import annotations

import pytest

from agent.tray.tkhost import TkHost, TkUnavailableError


def test_a_failed_start_keeps_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Before the fix the second start() returned the dead host: every later dialog was queued to no thread and
    # the worker's click did nothing, with no error logged.
    monkeypatch.setenv("DISPLAY", ":9999")  # no X server there
    host = TkHost()
    with pytest.raises(TkUnavailableError):
        host.start(timeout=10)
    with pytest.raises(TkUnavailableError):
        host.start(timeout=10)
    assert not host.alive
