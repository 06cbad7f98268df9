"""The user's D-Bus session bus, for the Linux backends: :class:`SessionBus` (jeepney, imported on first use),
the :class:`Bus` protocol tests replace it with, and :class:`DBusCallError`."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from agent.platform.base import PlatformError

CALL_TIMEOUT = 2.0
# D-Bus errors that mean "nobody serves this name": try the next one.
_NO_SERVICE = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Spawn.",
)


class DBusCallError(PlatformError):
    """A D-Bus method call failed: ``name`` is the D-Bus error name ("" for a transport error)."""

    def __init__(self, interface: str, method: str, name: str, detail: str) -> None:
        self.interface = interface
        self.method = method
        self.name = name
        super().__init__(f"D-Bus {interface}.{method} failed: {name or 'no reply'}: {detail}")

    @property
    def no_service(self) -> bool:
        return self.name.startswith(_NO_SERVICE)


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
        timeout: float = CALL_TIMEOUT,
    ) -> tuple[Any, ...]:
        """The reply's body; raises :class:`DBusCallError` for an error reply or no reply."""
        ...


class SessionBus:
    """The user's session bus through jeepney; one connection, opened on first use, one call at a time (the
    protection loop and the lock thread share it; a blocking jeepney connection is not thread-safe)."""

    def __init__(self) -> None:
        self._conn: Any = None
        self._lock = threading.Lock()

    def call(
        self,
        destination: str,
        path: str,
        interface: str,
        method: str,
        *,
        signature: str = "",
        body: tuple[Any, ...] = (),
        timeout: float = CALL_TIMEOUT,
    ) -> tuple[Any, ...]:
        try:
            from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call
            from jeepney.io.blocking import open_dbus_connection
        except ImportError as err:
            raise PlatformError(
                "jeepney is not installed; reinstall Mamori with its Linux dependencies"
            ) from err
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = open_dbus_connection(bus="SESSION")
                addr = DBusAddress(path, bus_name=destination, interface=interface)
                reply = self._conn.send_and_get_reply(
                    new_method_call(addr, method, signature, body), timeout=timeout
                )
            except Exception as err:  # jeepney: OSError, TimeoutError, a closed connection
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise DBusCallError(interface, method, "", f"{type(err).__name__}: {err}") from err
        # jeepney hands error replies back as messages: their body is the error text, never the answer.
        if reply.header.message_type is MessageType.error:
            name = str(reply.header.fields.get(HeaderFields.error_name, "org.freedesktop.DBus.Error.Failed"))
            text = str(reply.body[0]) if reply.body else ""
            raise DBusCallError(interface, method, name, text)
        return tuple(reply.body)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
