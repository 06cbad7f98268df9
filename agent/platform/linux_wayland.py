"""Linux Wayland backend (GNOME).

- idle: ``org.gnome.Mutter.IdleMonitor.GetIdletime`` on the session bus (milliseconds since the last input).
  The protection loop polls it (about once a second, more often near a threshold); Mutter's idle watches
  would only save that one round trip.
- lock: agent.toml ``lock_command``, else GNOME Shell's ``org.gnome.ScreenSaver.Lock``, else
  ``loginctl lock-session`` (logind only forwards the request to the shell as the session's ``Lock`` signal,
  so on GNOME asking the shell is the direct way).
- lock state: ``org.gnome.ScreenSaver.GetActive``, which GNOME Shell turns true only once its lock screen
  is shown; logind's ``LockedHint`` only when the shell cannot be asked. GNOME Shell ≥ 3.38 serves the
  interface as ``org.gnome.Shell.ScreenShield`` and ``org.gnome.ScreenSaver`` is a small gjs service that
  forwards to it; when that forwarder cannot start (no gjs) the shell's own name is asked.
- lock before sleep: logind's delay inhibitor and ``PrepareForSleep`` (agent/platform/logind.py).

What Wayland cannot do: a client sees no other client's windows (no list, titles, pids or positions), and
nothing a client draws stays above GNOME Shell (the Activities overview and Alt+Tab show live thumbnails of
every window). So ``window_list`` and ``cover`` are False: the runtime reports them degraded and the protect
stage locks the session instead of covering (SPEC.md, "Degraded operation is data").

D-Bus goes through ``bus`` (a :class:`SessionBus` by default, jeepney imported lazily); tests pass a fake.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.platform import logind
from agent.platform.base import Capabilities, Monitor, PlatformError, Window
from agent.platform.linux_x11 import run_locker
from agent.platform.session_bus import CALL_TIMEOUT, Bus, DBusCallError, SessionBus

__all__ = ["CALL_TIMEOUT", "Bus", "DBusCallError", "SessionBus", "WaylandDesktop"]

logger = logging.getLogger(__name__)

IDLE_MONITOR = (
    "org.gnome.Mutter.IdleMonitor",
    "/org/gnome/Mutter/IdleMonitor/Core",
    "org.gnome.Mutter.IdleMonitor",
)
SCREENSAVER_PATH = "/org/gnome/ScreenSaver"
SCREENSAVER_INTERFACE = "org.gnome.ScreenSaver"
# Who serves org.gnome.ScreenSaver, in the order asked: the public name, then GNOME Shell's own.
SCREENSAVER_NAMES = ("org.gnome.ScreenSaver", "org.gnome.Shell.ScreenShield")
SCREENSAVER = (SCREENSAVER_NAMES[0], SCREENSAVER_PATH, SCREENSAVER_INTERFACE)
# GNOME Shell answers Lock only once the lock screen is shown (js/ui/shellDBus.js, LockAsync), after its
# animation; give it longer than an ordinary call.
LOCK_TIMEOUT = 10.0
NO_SHIELD_RETRY = 30.0  # seconds before a desktop without GNOME Shell's screen shield is asked again
NO_COVER_NOTE = (
    "Wayland shows no client the other windows and GNOME Shell draws above every client: customer windows "
    "cannot be covered, so the protect stage locks the screen instead"
)


class WaylandDesktop:
    def __init__(
        self, lock_command: Sequence[str] = (), bus: Bus | None = None, session: logind.Session | None = None
    ) -> None:
        self._bus: Bus = bus or SessionBus()
        self.lock_command = tuple(lock_command)
        self._session = session if session is not None else logind.Session.for_current()
        self._shield: str | None = None  # the name that last answered on org.gnome.ScreenSaver
        self._no_shield: DBusCallError | None = None  # why no name answered (asked again after a while)
        self._no_shield_until = 0.0
        self._idle_ok: bool | None = None  # the last GetIdletime worked (None: not asked yet)

    # ---- GNOME Shell's screen shield -------------------------------------------------------------------
    def _screensaver(
        self, method: str, timeout: float = CALL_TIMEOUT, fresh: bool = False
    ) -> tuple[Any, ...]:
        """``fresh``: ask even when no shield answered a moment ago (a lock must not be skipped for that)."""
        if (
            self._shield is None
            and self._no_shield is not None
            and not fresh
            and time.monotonic() < self._no_shield_until
        ):
            # Asked on every sample: on a desktop without GNOME Shell, each call to the activatable
            # org.gnome.ScreenSaver name would make the bus try to start its gjs service again.
            raise self._no_shield
        names = [self._shield] if self._shield else []
        names += [n for n in SCREENSAVER_NAMES if n != self._shield]
        last: DBusCallError | None = None
        for name in names:
            try:
                reply = self._bus.call(name, SCREENSAVER_PATH, SCREENSAVER_INTERFACE, method, timeout=timeout)
            except DBusCallError as err:
                if not err.no_service:
                    raise
                last = err
                continue
            self._shield = name
            self._no_shield = None
            return reply
        self._shield = None
        assert last is not None
        self._no_shield, self._no_shield_until = last, time.monotonic() + NO_SHIELD_RETRY
        raise last

    def _shield_answers(self, fresh: bool = False) -> bool:
        try:
            self._screensaver("GetActive", fresh=fresh)
        except PlatformError:
            return False
        return True

    def _lock_methods(self, shield: bool | None = None) -> list[tuple[str, Callable[[], str | None]]]:
        if self.lock_command:
            return [("command", lambda: run_locker(self.lock_command))]
        gnome = ("gnome-screensaver", self._lock_gnome)
        loginctl: list[tuple[str, Callable[[], str | None]]] = []
        if self._session is not None and shutil.which("loginctl"):
            argv = ["loginctl", "lock-session", self._session.session_id]
            loginctl.append(("loginctl", lambda: run_locker(argv)))
        if shield is False and loginctl:
            return [*loginctl, gnome]  # no GNOME Shell answers: logind's Lock signal may reach a locker
        return [gnome, *loginctl]

    def _lock_gnome(self) -> str | None:
        try:
            self._screensaver("Lock", timeout=LOCK_TIMEOUT, fresh=True)
        except PlatformError as err:
            return str(err)
        return None

    # ---- Desktop ---------------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        # Asked on every sample: the idle answer is the last GetIdletime's, asked here only once at start.
        if self._idle_ok is None:
            with contextlib.suppress(PlatformError):
                self.idle_seconds()
        idle = bool(self._idle_ok)
        shield = self._shield is not None or self._shield_answers()
        notes = [NO_COVER_NOTE]
        if not idle:
            notes.append("org.gnome.Mutter.IdleMonitor does not answer (not GNOME?): idle time is unknown")
        if not shield:
            notes.append(
                "GNOME Shell's org.gnome.ScreenSaver does not answer: the lock cannot be verified"
                + (" except by logind's LockedHint" if self._session is not None else "")
            )
        return Capabilities(
            backend="wayland",
            idle=idle,
            window_list=False,
            window_pids=False,
            lock=True,
            lock_state=shield or self._session is not None,
            lock_before_sleep=self._session is not None and logind.available(),
            cover=False,
            notes=tuple(notes),
            lock_method=self._lock_methods(shield)[0][0],
        )

    def idle_seconds(self) -> float:
        try:
            (ms,) = self._bus.call(*IDLE_MONITOR, "GetIdletime")
            seconds = int(ms) / 1000.0
        except PlatformError:
            self._idle_ok = False
            raise
        except (TypeError, ValueError) as err:
            self._idle_ok = False
            raise PlatformError(f"GetIdletime answered {ms!r}, not milliseconds") from err
        self._idle_ok = True
        return seconds

    def windows(self) -> list[Window]:
        return []

    def monitors(self) -> list[Monitor]:
        return []

    def is_locked(self) -> bool:
        """GNOME Shell's word when it answers (its lock screen is shown), else logind's ``LockedHint``."""
        try:
            (active,) = self._screensaver("GetActive")
        except PlatformError as err:
            if self._session is None:
                raise
            logger.debug("GetActive unavailable, asking logind: %s", err)
            return self._session.locked_hint()
        return bool(active)

    def lock(self) -> None:
        failures = []
        for name, method in self._lock_methods(self._shield is not None or self._shield_answers(fresh=True)):
            problem = method()
            if problem is None:
                return
            failures.append(f"{name}: {problem}")
        raise PlatformError("cannot lock the session (" + "; ".join(failures) + ")")

    def watch_sleep(self, before_sleep: Callable[[], None]) -> None:
        if self._session is None:
            raise PlatformError("no logind session: lock before sleep is unavailable")
        logind.watch_sleep(before_sleep)

    def close(self) -> None:
        close = getattr(self._bus, "close", None)
        if callable(close):
            close()
