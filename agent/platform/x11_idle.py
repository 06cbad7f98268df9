"""Idle time and lock state of an X11 session (used by agent/platform/linux_x11.py).

- idle: MIT-SCREEN-SAVER ``QueryInfo`` (the server's own input idle counter; XTEST input resets it too).
- locked: the X screensaver is on, or a locker we started holds the session (agent/platform/x11_lock.py), or
  the desktop's screen saver on the session bus says ``GetActive`` (agent/platform/x11_screensaver.py), or
  logind's ``LockedHint`` for this session.
"""

from __future__ import annotations

import time
from typing import Any

from agent.platform import logind
from agent.platform.base import PlatformError
from agent.platform.x11_display import XDisplay
from agent.platform.x11_lock import SessionLocker
from agent.platform.x11_screensaver import DesktopScreenSaver

LOGIND_INTERVAL = 2.0
SCREENSAVER_ON = 1  # MIT-SCREEN-SAVER QueryInfo state
SS_REUSE = 0.05  # seconds one QueryInfo reply answers both idle_seconds() and is_locked()


class IdleLockState:
    """The session's input idle counter and whether it is locked, as the presence tick asks them."""

    def __init__(
        self,
        display: XDisplay,
        session: logind.Session | None,
        locker: SessionLocker,
        desktop_saver: DesktopScreenSaver | None = None,
    ) -> None:
        self._x = display
        self._session = session
        self._locker = locker
        self._saver = desktop_saver
        self._saver_checked = float("-inf")
        self._saver_active = False
        self.has_screensaver = display.has_extension("MIT-SCREEN-SAVER")
        self._ss_cache: tuple[float, Any] | None = None
        self._logind_checked = float("-inf")
        self._logind_locked = False

    def idle_seconds(self) -> float:
        if not self.has_screensaver:
            raise PlatformError("the X server has no MIT-SCREEN-SAVER extension; idle time is unknown")
        try:
            info = self._screensaver_info()
        except self._x.errors as err:
            raise PlatformError(f"X idle query failed: {err}") from err
        return float(info.idle) / 1000.0

    def is_locked(self) -> bool:
        if self.has_screensaver:
            try:
                if self._screensaver_info(reuse=True).state == SCREENSAVER_ON:
                    return True
            except self._x.errors as err:
                raise PlatformError(f"X screensaver query failed: {err}") from err
        if self._locker.locker_evidence():
            return True
        now = time.monotonic()
        # The D-Bus answers (desktop screen saver, logind) at most every LOGIND_INTERVAL seconds each (CPU
        # budget of the idle agent).
        if self._saver is not None:
            if now - self._saver_checked >= LOGIND_INTERVAL:
                self._saver_checked = now
                self._saver_active = self._saver.active() is True
            if self._saver_active:
                return True
        if self._session is None:
            return False
        if now - self._logind_checked >= LOGIND_INTERVAL:
            self._logind_checked = now
            self._logind_locked = self._session.locked_hint()
        return self._logind_locked

    def close(self) -> None:
        if self._saver is not None:
            self._saver.close()

    def _screensaver_info(self, reuse: bool = False) -> Any:
        """MIT-SCREEN-SAVER QueryInfo. The runtime asks idle_seconds() then is_locked() back to back on every
        presence tick: with ``reuse`` the reply idle_seconds() just got (at most SS_REUSE old) answers once,
        so a tick costs one X round trip instead of two."""
        now = time.monotonic()
        with self._x.lock:
            cached, self._ss_cache = self._ss_cache, None
            if reuse and cached is not None and now - cached[0] < SS_REUSE:
                return cached[1]
            info = self._x.root.screensaver_query_info()
            if not reuse:
                self._ss_cache = (now, info)
            return info
