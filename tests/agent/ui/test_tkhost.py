"""The Tk thread host: a Tk that cannot start says so every time it is asked, not only the first time."""

from __future__ import annotations

import pytest

from agent.ui.tkhost import TkHost, TkUnavailableError


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


def test_concurrent_starts_share_one_tk_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    # Before the fix two threads calling start() at once could each create a Tk thread (two interpreters).
    runs: list[int] = []

    def slow_run(self: TkHost) -> None:
        runs.append(1)
        time.sleep(0.2)
        self._ready.set()

    monkeypatch.setattr(TkHost, "_run", slow_run)
    real_thread = threading.Thread

    def slow_thread(*args: object, **kwargs: object) -> threading.Thread:
        time.sleep(0.05)  # widen the window between "no thread yet" and "thread set"
        return real_thread(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("agent.ui.tkhost.threading.Thread", slow_thread)
    host = TkHost()
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            host.start(timeout=5)
        except BaseException as err:
            errors.append(err)

    threads = [real_thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert runs == [1] and errors == []


def test_the_idle_poll_backs_off_and_a_job_brings_it_back() -> None:
    from agent.ui import tkhost

    # Before the change the Tk thread woke 20 times a second for the rest of the agent's life.
    class Root:
        def __init__(self) -> None:
            self.delays: list[int] = []

        def after(self, ms: int, _fn: object) -> None:
            self.delays.append(ms)

    host = TkHost()
    root = Root()
    host.root = root  # type: ignore[assignment]
    for _ in range(6):
        host._drain()
    assert root.delays[-1] == tkhost.IDLE_POLL_MS and root.delays[0] == 2 * tkhost.POLL_MS
    ran: list[object] = []
    host.call(ran.append)
    host._drain()
    assert ran == [root] and root.delays[-1] == tkhost.POLL_MS
