"""A scripted fake desktop: tests (and ``MAMORI_DESKTOP_BACKEND=fake``) set idle time, windows and lock
behaviour by hand and read back what the agent asked for. Thread-safe; no OS calls."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace

from agent.platform.base import Capabilities, Monitor, PlatformError, Rect, Window


class FakeDesktop:
    def __init__(
        self,
        windows: Iterable[Window] = (),
        *,
        idle: float = 0.0,
        monitors: Iterable[Monitor] = (Monitor(Rect(0, 0, 1920, 1080), primary=True),),
        capabilities: Capabilities | None = None,
        lock_works: bool = True,
    ) -> None:
        self._lock = threading.Lock()
        self._windows = list(windows)
        self._idle = idle
        self._monitors = list(monitors)
        self._caps = capabilities or Capabilities(
            backend="fake",
            idle=True,
            window_list=True,
            window_pids=True,
            lock=True,
            lock_state=True,
            lock_before_sleep=True,
            cover=True,
            lock_method="fake",
        )
        self.lock_works = lock_works  # False: lock() "succeeds" but the session stays unlocked
        self.lock_raises: str | None = None  # set: lock() raises PlatformError with this text
        self.locked = False
        self.lock_calls = 0
        self._sleep_callbacks: list[Callable[[], None]] = []

    # ---- scripting -------------------------------------------------------------------------------------
    def set_idle(self, seconds: float) -> None:
        with self._lock:
            self._idle = seconds

    def add_idle(self, seconds: float) -> None:
        with self._lock:
            self._idle += seconds

    def input(self) -> None:
        """The worker touched the mouse or keyboard."""
        self.set_idle(0.0)

    def set_windows(self, windows: Iterable[Window]) -> None:
        with self._lock:
            self._windows = list(windows)

    def add_window(self, window: Window) -> None:
        with self._lock:
            self._windows.append(window)

    def remove_window(self, window_id: int) -> None:
        with self._lock:
            self._windows = [w for w in self._windows if w.id != window_id]

    def move_window(self, window_id: int, rect: Rect) -> None:
        with self._lock:
            self._windows = [replace(w, rect=rect) if w.id == window_id else w for w in self._windows]

    def unlock(self) -> None:
        with self._lock:
            self.locked = False
            self._idle = 0.0

    def sleep_now(self) -> None:
        """The OS is about to sleep: run the registered callbacks like logind's PrepareForSleep."""
        for callback in list(self._sleep_callbacks):
            callback()

    # ---- Desktop ---------------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return self._caps

    def idle_seconds(self) -> float:
        with self._lock:
            return self._idle

    def windows(self) -> list[Window]:
        with self._lock:
            return list(self._windows) if self._caps.window_list else []

    def monitors(self) -> list[Monitor]:
        with self._lock:
            return list(self._monitors)

    def is_locked(self) -> bool:
        with self._lock:
            return self.locked

    def lock(self) -> None:
        with self._lock:
            self.lock_calls += 1
            if self.lock_raises is not None:
                raise PlatformError(self.lock_raises)
            if self.lock_works:
                self.locked = True

    def watch_sleep(self, before_sleep: Callable[[], None]) -> None:
        self._sleep_callbacks.append(before_sleep)
