"""systemd-logind over D-Bus (jeepney, imported lazily): session lock state and lock before sleep.

Used by the Linux backends. Every function degrades to "unavailable" instead of failing: a machine without
logind (containers, non-systemd distributions) simply lacks these capabilities.

- ``Session.locked_hint()``: ``org.freedesktop.login1.Session.LockedHint`` (set by GNOME/KDE lock screens).
- ``watch_sleep(cb)``: takes a *delay* inhibitor, calls ``cb`` on ``PrepareForSleep(true)`` and then releases
  the inhibitor so the sleep proceeds; takes a new one on wake (logind's documented protocol:
  https://www.freedesktop.org/wiki/Software/systemd/inhibit/).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.platform.base import PlatformError

logger = logging.getLogger(__name__)

BUS_NAME = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
SYSTEM_BUS_SOCKET = Path("/run/dbus/system_bus_socket")


def available() -> bool:
    """True when a system bus exists and jeepney is importable (logind itself is checked on first use)."""
    if not SYSTEM_BUS_SOCKET.exists() and "DBUS_SYSTEM_BUS_ADDRESS" not in os.environ:
        return False
    try:
        import jeepney  # noqa: F401
    except ImportError:
        return False
    return True


def _call(path: str, interface: str, method: str, signature: str = "", body: tuple[Any, ...] = ()) -> Any:
    from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    try:
        with open_dbus_connection(bus="SYSTEM") as conn:
            addr = DBusAddress(path, bus_name=BUS_NAME, interface=interface)
            reply = conn.send_and_get_reply(new_method_call(addr, method, signature, body), timeout=2)
    except Exception as err:  # jeepney raises DBusErrorResponse, OSError, TimeoutError
        raise PlatformError(f"logind {method} failed: {err}") from err
    # An error reply comes back as a message whose body is the error text: never read it as the answer (a
    # failing LockedHint would otherwise read as "locked").
    if reply.header.message_type is MessageType.error:
        raise PlatformError(f"logind {method} failed: {reply.header.fields.get(HeaderFields.error_name)}")
    return reply.body


class Session:
    """One logind session (the one this agent runs in)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self._path: str | None = None

    @classmethod
    def for_current(cls) -> Session | None:
        session_id = os.environ.get("XDG_SESSION_ID")
        if not session_id or not available():
            return None
        return cls(session_id)

    def _object_path(self) -> str:
        if self._path is None:
            body = _call(MANAGER_PATH, f"{BUS_NAME}.Manager", "GetSession", "s", (self.session_id,))
            self._path = str(body[0])
        return self._path

    def locked_hint(self) -> bool:
        try:
            body = _call(
                self._object_path(),
                "org.freedesktop.DBus.Properties",
                "Get",
                "ss",
                (f"{BUS_NAME}.Session", "LockedHint"),
            )
        except PlatformError as err:
            logger.debug("LockedHint unavailable: %s", err)
            return False
        value = body[0]
        return bool(value[1] if isinstance(value, tuple) else value)

    def lock(self) -> None:
        _call(self._object_path(), f"{BUS_NAME}.Session", "Lock")


def watch_sleep(before_sleep: Callable[[], None]) -> threading.Thread:
    """Start a daemon thread that calls ``before_sleep`` each time the machine is about to sleep."""
    if not available():
        raise PlatformError("no D-Bus system bus: lock before sleep is unavailable")
    thread = threading.Thread(
        target=_sleep_loop, args=(before_sleep,), name="mamori-logind-sleep", daemon=True
    )
    thread.start()
    return thread


def _sleep_loop(before_sleep: Callable[[], None]) -> None:
    from jeepney import DBusAddress, MatchRule, new_method_call
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    manager = DBusAddress(MANAGER_PATH, bus_name=BUS_NAME, interface=f"{BUS_NAME}.Manager")
    # The bus daemon resolves the well-known sender name; messages carry logind's unique name (":1.5"), so the
    # local filter must not compare the sender.
    bus_rule = MatchRule(
        type="signal",
        sender=BUS_NAME,
        interface=f"{BUS_NAME}.Manager",
        member="PrepareForSleep",
        path=MANAGER_PATH,
    )
    local_rule = MatchRule(
        type="signal", interface=f"{BUS_NAME}.Manager", member="PrepareForSleep", path=MANAGER_PATH
    )
    try:
        with open_dbus_connection(bus="SYSTEM", enable_fds=True) as conn:
            conn.send_and_get_reply(message_bus.AddMatch(bus_rule), timeout=2)

            def inhibit() -> Any:
                msg = new_method_call(
                    manager, "Inhibit", "ssss", ("sleep", "Mamori", "Lock the screen before sleep", "delay")
                )
                return conn.send_and_get_reply(msg, timeout=2).body[0]

            with conn.filter(local_rule) as signals:
                fd = inhibit()
                while True:
                    going_to_sleep = bool(conn.recv_until_filtered(signals).body[0])
                    if going_to_sleep:
                        try:
                            before_sleep()
                        finally:
                            fd.close()
                    else:
                        fd = inhibit()
    except Exception as err:  # the watcher is best effort; the agent reports the capability as degraded
        logger.warning("lock before sleep stopped: %s", type(err).__name__)
