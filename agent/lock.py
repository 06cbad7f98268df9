"""Lock the session and check that it really locked (SPEC.md, "Agent behaviour": lock + verification).

:class:`SessionLock` runs the lock command in its own thread, then polls the OS lock state for
``verify_timeout`` seconds. A lock that errors or does not engage is reported as ``session.lock_failed`` and
handed to ``on_failed`` so the caller covers the whole screen. It also reports lock and unlock changes the OS
made on its own, and locks before the machine sleeps when the policy asks for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.degraded import Degraded
from agent.platform.base import Desktop, PlatformError, SleepWatcher
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock
from policy.model import Presence

logger = logging.getLogger(__name__)

VERIFY_POLL = 0.1
SLEEP_VERIFY_TIMEOUT = 3.0


class SessionLock:
    def __init__(
        self,
        desktop: Desktop,
        stream: EventStream,
        clock: Clock,
        stop: threading.Event,
        on_failed: Callable[[], None],
        *,
        verify_timeout: float = 5.0,
    ) -> None:
        self.desktop = desktop
        self.stream = stream
        self.clock = clock
        self.verify_timeout = verify_timeout
        self._stop = stop
        self._on_failed = on_failed
        self._lock = threading.Lock()
        self._locking = False
        self._was_locked = False
        self._thread: threading.Thread | None = None

    def _method(self) -> str:
        caps = self.desktop.capabilities()
        return caps.lock_method or caps.backend

    def track(self, locked: bool) -> None:
        """Report a lock state the OS changed by itself (``method`` "os"), and every unlock."""
        if locked == self._was_locked:
            return
        self._was_locked = locked
        if not locked:
            self.stream.publish(AgentEvent(Kind.SESSION_UNLOCKED, self.clock.now(), {}))
        elif not self._locking:
            self.stream.publish(AgentEvent(Kind.SESSION_LOCKED, self.clock.now(), {"method": "os"}))

    def lock_async(self, reason: str) -> None:
        """Start a lock-and-verify unless one is running."""
        with self._lock:
            if self._locking:
                return
            self._locking = True
        self._thread = threading.Thread(
            target=self._lock_and_verify, args=(reason,), name="mamori-lock", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float = 10.0) -> None:
        """Wait for a running lock-and-verify to finish (tests, shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _lock_and_verify(self, reason: str) -> None:
        method = self._method()
        try:
            try:
                self.desktop.lock()
            except PlatformError as err:
                logger.error("lock failed: %s", err)
                self._failed(method, "lock_error")
                return
            deadline = self.clock.monotonic() + self.verify_timeout
            while True:
                try:
                    if self.desktop.is_locked():
                        self._was_locked = True
                        self.stream.publish(
                            AgentEvent(Kind.SESSION_LOCKED, self.clock.now(), {"method": method})
                        )
                        return
                except PlatformError as err:
                    if self._stop.is_set():
                        return  # the agent is stopping and its display closing: nothing left to verify
                    logger.warning("lock state unknown: %s", err)
                    break
                if self.clock.monotonic() >= deadline or self._stop.is_set():
                    break
                self.clock.sleep(VERIFY_POLL)
            self._failed(method, "not_locked")
        finally:
            with self._lock:
                self._locking = False

    def _failed(self, method: str, reason: str) -> None:
        self.stream.publish(
            AgentEvent(Kind.LOCK_FAILED, self.clock.now(), {"method": method, "reason": reason})
        )
        self._on_failed()

    # ---- before sleep ----------------------------------------------------------------------------------
    def watch_sleep(self, presence: Callable[[], Presence], degraded: Degraded) -> None:
        """Lock before the machine sleeps when ``presence().lock_before_sleep`` (and the OS can tell us)."""
        caps = self.desktop.capabilities()
        if not caps.lock_before_sleep or not isinstance(self.desktop, SleepWatcher):
            return

        def before_sleep() -> None:
            if presence().lock_before_sleep:
                self._lock_before_sleep()

        try:
            self.desktop.watch_sleep(before_sleep)
        except PlatformError as err:
            degraded.report("lock_before_sleep", "unavailable", str(err))

    def _lock_before_sleep(self) -> None:
        method = self._method()
        try:
            self.desktop.lock()
        except PlatformError as err:
            logger.error("lock before sleep failed: %s", err)
            self.stream.publish(
                AgentEvent(Kind.LOCK_FAILED, self.clock.now(), {"method": method, "reason": "sleep"})
            )
            return
        # Verified like any lock, but within logind's delay (InhibitDelayMaxSec, 5 s by default): the machine
        # sleeps once this returns.
        deadline = self.clock.monotonic() + min(self.verify_timeout, SLEEP_VERIFY_TIMEOUT)
        while True:
            try:
                if self.desktop.is_locked():
                    self._was_locked = True
                    self.stream.publish(AgentEvent(Kind.SESSION_LOCKED, self.clock.now(), {"method": method}))
                    return
            except PlatformError as err:
                logger.warning("lock state unknown before sleep: %s", err)
                break
            if self.clock.monotonic() >= deadline:
                break
            self.clock.sleep(VERIFY_POLL)
        self.stream.publish(
            AgentEvent(Kind.LOCK_FAILED, self.clock.now(), {"method": method, "reason": "sleep_not_locked"})
        )
