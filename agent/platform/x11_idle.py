"""Idle time and lock state of an X11 session (used by agent/platform/linux_x11.py).

- idle: MIT-SCREEN-SAVER ``QueryInfo`` (the server's own input idle counter; XTEST input resets it too).
- locked: the X screensaver is on, or a locker we started holds the session (agent/platform/x11_lock.py), or
  the desktop's screen saver on the session bus says ``GetActive`` (agent/platform/x11_screensaver.py), or
  logind's ``LockedHint`` for this session.
- :class:`ScreenSaverWatch`: the X server pushes every change of its screensaver state (MIT-SCREEN-SAVER
  ``ScreenSaverNotify``) to a listen-only connection, so the presence loop need not ask once a second whether
  the session locked; only the D-Bus answers are still polled (:attr:`IdleLockState.poll_interval`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from agent.platform import logind
from agent.platform.base import PlatformError
from agent.platform.x11_display import XDisplay
from agent.platform.x11_lock import SessionLocker
from agent.platform.x11_screensaver import DesktopScreenSaver

LOGIND_INTERVAL = 2.0
SCREENSAVER_ON = 1  # MIT-SCREEN-SAVER QueryInfo state
SS_REUSE = 0.05  # seconds one QueryInfo reply answers both idle_seconds() and is_locked()

logger = logging.getLogger(__name__)


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

    @property
    def poll_interval(self) -> float | None:
        """How often the lock state must still be asked when the X screensaver state is pushed
        (:class:`ScreenSaverWatch`): every LOGIND_INTERVAL while a desktop screen saver or logind may say
        "locked" (their answers are refreshed that often), else never (None)."""
        return LOGIND_INTERVAL if self._saver is not None or self._session is not None else None

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


class ScreenSaverWatch:
    """Calls ``on_change()`` from its own thread whenever the X screensaver turns on or off (or cycles).

    A second, listen-only X connection selects ScreenSaverNotify on the root window; its thread blocks in
    ``select()`` on that connection and a wake-up pipe (:meth:`close` writes to it): no timeout, no wake-up
    while nothing happens (SPEC.md, "Performance targets"). Raises PlatformError when it cannot start.
    """

    def __init__(self, display_name: str, on_change: Callable[[], None]) -> None:
        try:
            from Xlib import display as xdisplay
            from Xlib import error
            from Xlib.ext import screensaver

            self._errors: tuple[type[BaseException], ...] = (error.XError, error.ConnectionClosedError)
            self._d: Any = xdisplay.Display(display_name)
        except Exception as err:  # python-xlib raises many types on connect
            raise PlatformError(
                f"cannot open X display {display_name} for screensaver events: {err}"
            ) from err
        try:
            if not self._d.has_extension("MIT-SCREEN-SAVER"):
                raise PlatformError("the X server has no MIT-SCREEN-SAVER extension")
            self._d.set_error_handler(lambda *_args: None)
            self._event = int(self._d.extension_event.Notify)  # ScreenSaverNotify
            self._d.screen().root.screensaver_select_input(screensaver.NotifyMask | screensaver.CycleMask)
            self._d.sync()  # the selection holds before the caller reads the state
        except PlatformError:
            self._d.close()
            raise
        except Exception as err:
            self._d.close()
            raise PlatformError(f"cannot watch the X screensaver: {err}") from err
        self._on_change = on_change
        self._wake_r, self._wake_w = os.pipe()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mamori-x11-saver", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._d.fileno()
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select([fd, self._wake_r], [], [])
                if self._wake_r in readable or self._closed.is_set():
                    return
                changed = False
                while self._d.pending_events():
                    if self._d.next_event().type == self._event:
                        changed = True
                if changed:
                    try:
                        self._on_change()
                    except Exception:
                        logger.exception("screensaver change handler failed")
        except self._errors as err:
            # The X server went away: the presence loop's own queries report it (idle query_failed).
            logger.warning("screensaver watch ended: %s", type(err).__name__)
            self._closed.set()
            try:
                self._on_change()
            except Exception:
                logger.exception("screensaver change handler failed")

    @property
    def alive(self) -> bool:
        return not self._closed.is_set()

    def close(self) -> None:
        if self._closed.is_set() and not self._thread.is_alive():
            return
        self._closed.set()
        os.write(self._wake_w, b"\0")
        self._thread.join(timeout=2.0)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        with contextlib.suppress(*self._errors):
            self._d.close()
