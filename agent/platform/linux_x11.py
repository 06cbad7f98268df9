"""Linux X11 backend (python-xlib), composed of one part per seam:

- the shared X connection: agent/platform/x11_display.py (python-xlib is not thread-safe: one lock).
- windows: EWMH client list and properties, agent/platform/x11_windows.py. ``window_list_stamp``: a counter
  kept by a listen-only connection, else the stacking list alone (one round trip), so pollers re-read the
  windows only when they change.
- idle and locked: MIT-SCREEN-SAVER, a running locker, logind's ``LockedHint``: agent/platform/x11_idle.py.
  ``watch_lock_state``: the X screensaver's changes pushed by a listen-only connection, so the presence loop
  waits for the next idle threshold instead of asking once a second.
- lock: agent.toml ``lock_command``, else ``loginctl lock-session``, else ``xdg-screensaver lock``:
  agent/platform/x11_lock.py.
- monitors: RandR 1.5 monitors, else Xinerama, else the root window.
- lock before sleep: logind ``PrepareForSleep`` with a delay inhibitor (agent/platform/logind.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from agent.platform import logind
from agent.platform.base import Capabilities, Monitor, PlatformError, Rect, Window
from agent.platform.x11_display import XDisplay
from agent.platform.x11_idle import LOGIND_INTERVAL, SCREENSAVER_ON, SS_REUSE, IdleLockState, ScreenSaverWatch
from agent.platform.x11_lock import LOCKER_GRACE, SessionLocker, run_locker, start_locker
from agent.platform.x11_screensaver import DesktopScreenSaver, session_bus_available
from agent.platform.x11_windows import CLIENT_LISTS, SKIP_TYPES, WATCHED_WINDOW_PROPS, ListWatch, WindowReader

__all__ = [
    "CLIENT_LISTS",
    "LOCKER_GRACE",
    "LOGIND_INTERVAL",
    "SCREENSAVER_ON",
    "SKIP_TYPES",
    "SS_REUSE",
    "WATCHED_WINDOW_PROPS",
    "X11Desktop",
    "run_locker",
    "start_locker",
]

logger = logging.getLogger(__name__)


class X11Desktop:
    """The X11 session named by ``display`` (default ``$DISPLAY``)."""

    def __init__(self, display: str | None = None, lock_command: Sequence[str] = ()) -> None:
        self._x = XDisplay(display)
        self.display_name = self._x.name
        self._session = logind.Session.for_current()
        self._reader = WindowReader(self._x)
        self._locker = SessionLocker(self._x, self._session, lock_command)
        # The desktop's screen saver (KDE, Xfce, GNOME on Xorg…) when the session has a bus to ask it on.
        saver = DesktopScreenSaver() if session_bus_available() else None
        self._state = IdleLockState(self._x, self._session, self._locker, saver)
        self._caps: Capabilities | None = None
        self._watch: ListWatch | None = None
        self._watch_failed = False
        self._saver_watch: ScreenSaverWatch | None = None

    @property
    def lock_command(self) -> tuple[str, ...]:
        return self._locker.lock_command

    def capabilities(self) -> Capabilities:
        if self._caps is None:
            notes: list[str] = []
            with self._x.lock:
                wm = self._reader.has_window_manager()
            has_ss = self._state.has_screensaver
            if not has_ss:
                notes.append("the X server lacks MIT-SCREEN-SAVER: idle time is unknown")
            if not wm:
                notes.append("no EWMH window manager: the window list is unavailable")
            methods = self._locker.methods()
            lock_method = methods[0][0] if methods else ""
            if not lock_method:
                notes.append(
                    "no lock method: set lock_command in agent.toml or install loginctl/xdg-screensaver"
                )
            self._caps = Capabilities(
                backend="x11",
                idle=has_ss,
                window_list=wm,
                window_pids=wm,
                lock=bool(lock_method),
                lock_state=has_ss or self._session is not None,
                lock_before_sleep=self._session is not None and logind.available(),
                cover=True,
                notes=tuple(notes),
                lock_method=lock_method,
            )
        return self._caps

    def idle_seconds(self) -> float:
        return self._state.idle_seconds()

    def is_locked(self) -> bool:
        return self._state.is_locked()

    def lock(self) -> None:
        self._locker.lock()

    def watch_lock_state(self, on_change: Callable[[], None]) -> float | None:
        """Optional Desktop hook used by the presence loop (agent/protection.py): call ``on_change()`` whenever
        the X screensaver turns on or off, and return how often :meth:`is_locked` must still be asked for the
        rest (the D-Bus screen saver and logind, every LOGIND_INTERVAL when present; None: never). The idle
        counter needs no watch: it grows by one second a second, so the next threshold is computed.
        Raises PlatformError when the X server cannot push the state (the loop then keeps asking).
        """
        if not self._state.has_screensaver:
            raise PlatformError("the X server has no MIT-SCREEN-SAVER extension")
        if self._saver_watch is None or not self._saver_watch.alive:
            self._saver_watch = ScreenSaverWatch(self.display_name, on_change)
        return self._state.poll_interval

    @property
    def lock_state_pushed(self) -> bool:
        """Whether the watch started by :meth:`watch_lock_state` still runs (False: ask the state again)."""
        return self._saver_watch is not None and self._saver_watch.alive

    def windows(self) -> list[Window]:
        try:
            with self._x.lock:
                return self._reader.windows()
        except self._x.errors as err:
            raise PlatformError(f"X window list failed: {err}") from err

    def window_list_stamp(self) -> object:
        """A cheap value that changes whenever a top-level window appears, disappears, is restacked or retitled.

        Optional Desktop hook used by the share monitor (agent/share/monitor.py): it polls several times a
        second, and a full :meth:`windows` costs about nine X round trips per window. The stamp is a counter
        kept by a second, listen-only X connection (:class:`ListWatch`): PropertyNotify on the root
        (``_NET_CLIENT_LIST_STACKING``) and on every client (title, class, pid). While nothing changes it costs
        one non-blocking read of that connection and no round trip. Without it (the watch could not start),
        the stacking list itself is the stamp: one round trip, and titles changed in place are not seen.
        """
        watch = self._ensure_watch()
        try:
            if watch is not None:
                return watch.stamp()
            with self._x.lock:
                ids = self._reader.client_ids()
        except self._x.errors as err:
            raise PlatformError(f"X window list failed: {err}") from err
        return tuple(int(xid) for xid in ids) if ids is not None else ()

    @property
    def window_list_stamp_titles(self) -> bool:
        """Whether :meth:`window_list_stamp` also changes when a window is retitled in place."""
        return self._ensure_watch() is not None

    def _ensure_watch(self) -> ListWatch | None:
        if self._watch is None and not self._watch_failed:
            try:
                self._watch = ListWatch(self.display_name)
            except Exception as err:  # python-xlib raises many types on connect; the round-trip stamp remains
                logger.warning("window list watch unavailable (%s); polling the client list", err)
                self._watch_failed = True
        return self._watch

    def monitors(self) -> list[Monitor]:
        x = self._x
        with x.lock:
            try:
                if x.has_extension("RANDR"):
                    from Xlib.ext import randr

                    reply = randr.get_monitors(x.root, True)
                    found = [
                        Monitor(
                            Rect(m.x, m.y, m.width_in_pixels, m.height_in_pixels), primary=bool(m.primary)
                        )
                        for m in reply.monitors
                    ]
                    if found:
                        if not any(m.primary for m in found):
                            found[0] = Monitor(found[0].rect, primary=True)
                        return found
                if x.has_extension("XINERAMA"):
                    screens = x.d.xinerama_query_screens().screens
                    if screens:
                        return [
                            Monitor(Rect(s.x, s.y, s.width, s.height), primary=i == 0)
                            for i, s in enumerate(screens)
                        ]
            except x.errors as err:
                logger.debug("monitor query failed, using the root window: %s", type(err).__name__)
            geom = x.root.get_geometry()
        return [Monitor(Rect(0, 0, int(geom.width), int(geom.height)), primary=True)]

    def watch_sleep(self, before_sleep: Callable[[], None]) -> None:
        if self._session is None:
            raise PlatformError("no logind session: lock before sleep is unavailable")
        logind.watch_sleep(before_sleep)

    def close(self) -> None:
        if self._saver_watch is not None:
            self._saver_watch.close()
        if self._watch is not None:
            self._watch.close()
        self._state.close()
        self._x.close()
