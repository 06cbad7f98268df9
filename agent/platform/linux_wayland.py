"""Linux Wayland backend (GNOME). Wayland gives clients no global window list and no global coordinates,
so this backend cannot cover windows: ``window_list`` and ``cover`` are False, the runtime reports the
degraded capability and the protect stage locks the session instead (SPEC.md, "Degraded operation is data").

- idle: ``org.gnome.Mutter.IdleMonitor.GetIdletime`` on the session bus (milliseconds).
- locked: ``org.gnome.ScreenSaver.GetActive``, else logind ``LockedHint``.
- lock: agent.toml ``lock_command``, else ``loginctl lock-session``, else ``org.gnome.ScreenSaver.Lock``.
- lock before sleep: logind, as on X11.

D-Bus goes through ``bus`` (a :class:`SessionBus` by default, jeepney imported lazily); tests pass a fake.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from agent.platform import logind
from agent.platform.base import Capabilities, Monitor, PlatformError, Window
from agent.platform.linux_x11 import run_locker

IDLE_MONITOR = (
    "org.gnome.Mutter.IdleMonitor",
    "/org/gnome/Mutter/IdleMonitor/Core",
    "org.gnome.Mutter.IdleMonitor",
)
SCREENSAVER = ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver", "org.gnome.ScreenSaver")


class Bus(Protocol):
    def call(
        self,
        destination: str,
        path: str,
        interface: str,
        method: str,
        *,
        signature: str = "",
        body: tuple[Any, ...] = (),
    ) -> tuple[Any, ...]: ...


class SessionBus:
    """The user's session bus through jeepney; one connection, opened on first use."""

    def __init__(self) -> None:
        self._conn: Any = None

    def call(
        self,
        destination: str,
        path: str,
        interface: str,
        method: str,
        *,
        signature: str = "",
        body: tuple[Any, ...] = (),
    ) -> tuple[Any, ...]:
        try:
            from jeepney import DBusAddress, new_method_call
            from jeepney.io.blocking import open_dbus_connection
        except ImportError as err:
            raise PlatformError(
                "jeepney is not installed; reinstall Mamori with its Linux dependencies"
            ) from err
        try:
            if self._conn is None:
                self._conn = open_dbus_connection(bus="SESSION")
            addr = DBusAddress(path, bus_name=destination, interface=interface)
            reply = self._conn.send_and_get_reply(new_method_call(addr, method, signature, body), timeout=2)
        except Exception as err:  # jeepney: DBusErrorResponse, OSError, TimeoutError
            self._conn = None
            raise PlatformError(f"D-Bus {interface}.{method} failed: {err}") from err
        return tuple(reply.body)


class WaylandDesktop:
    def __init__(
        self, lock_command: Sequence[str] = (), bus: Bus | None = None, session: logind.Session | None = None
    ) -> None:
        self._bus: Bus = bus or SessionBus()
        self.lock_command = tuple(lock_command)
        self._session = session if session is not None else logind.Session.for_current()

    def _lock_methods(self) -> list[tuple[str, Callable[[], str | None]]]:
        if self.lock_command:
            return [("command", lambda: run_locker(self.lock_command))]
        methods: list[tuple[str, Callable[[], str | None]]] = []
        if self._session is not None and shutil.which("loginctl"):
            argv = ["loginctl", "lock-session", self._session.session_id]
            methods.append(("loginctl", lambda: run_locker(argv)))
        methods.append(("gnome-screensaver", self._lock_gnome))
        return methods

    def _lock_gnome(self) -> str | None:
        try:
            self._bus.call(*SCREENSAVER, "Lock")
        except PlatformError as err:
            return str(err)
        return None

    def capabilities(self) -> Capabilities:
        try:
            self._bus.call(*IDLE_MONITOR, "GetIdletime")
            idle = True
        except PlatformError:
            idle = False
        notes = [
            "Wayland has no global window list: customer windows cannot be covered, the session is locked"
        ]
        if not idle:
            notes.append("org.gnome.Mutter.IdleMonitor unavailable (not GNOME?): idle time is unknown")
        return Capabilities(
            backend="wayland",
            idle=idle,
            window_list=False,
            window_pids=False,
            lock=True,
            lock_state=True,
            lock_before_sleep=self._session is not None and logind.available(),
            cover=False,
            notes=tuple(notes),
            lock_method=self._lock_methods()[0][0],
        )

    def idle_seconds(self) -> float:
        (ms,) = self._bus.call(*IDLE_MONITOR, "GetIdletime")
        return int(ms) / 1000.0

    def windows(self) -> list[Window]:
        return []

    def monitors(self) -> list[Monitor]:
        return []

    def is_locked(self) -> bool:
        try:
            (active,) = self._bus.call(*SCREENSAVER, "GetActive")
            if bool(active):
                return True
        except PlatformError:
            pass
        return self._session is not None and self._session.locked_hint()

    def lock(self) -> None:
        failures = []
        for name, method in self._lock_methods():
            problem = method()
            if problem is None:
                return
            failures.append(f"{name}: {problem}")
        raise PlatformError("cannot lock the session (" + "; ".join(failures) + ")")

    def watch_sleep(self, before_sleep: Callable[[], None]) -> None:
        if self._session is None:
            raise PlatformError("no logind session: lock before sleep is unavailable")
        logind.watch_sleep(before_sleep)
