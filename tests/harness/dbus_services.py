"""A private dbus-daemon and scripted fake services (logind, GNOME Mutter IdleMonitor / ScreenSaver) for
testing the D-Bus code of the Linux backends over a real bus."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, HeaderFields, MessageType, new_error, new_method_return, new_signal
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

Handler = Callable[[str, str, str, tuple[Any, ...]], tuple[str, tuple[Any, ...]]]


@contextmanager
def private_bus(tmp: Path) -> Iterator[str]:
    if shutil.which("dbus-daemon") is None:
        raise RuntimeError("dbus-daemon is not installed")
    address = f"unix:path={tmp / 'bus'}"
    proc = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={address}", "--print-address"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = proc.stdout.readline().strip()
        yield printed or address
    finally:
        proc.terminate()
        proc.wait(timeout=5)


class FakeService:
    """Owns ``name`` on the bus and answers method calls with ``handler(path, interface, member, body)``,
    which returns (signature, body) or raises LookupError for "no such method"."""

    def __init__(self, address: str, name: str, handler: Handler) -> None:
        self.conn = open_dbus_connection(bus=address, enable_fds=True)
        self.conn.send_and_get_reply(message_bus.RequestName(name), timeout=5)
        self.handler = handler
        self.calls: list[str] = []
        self._stop = False
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                msg = self.conn.receive(timeout=0.2)
            except TimeoutError:
                continue
            except OSError:
                return
            if msg.header.message_type != MessageType.method_call:
                continue
            f = msg.header.fields
            path, iface, member = (
                f[HeaderFields.path],
                f.get(HeaderFields.interface, ""),
                f[HeaderFields.member],
            )
            self.calls.append(f"{iface}.{member}")
            try:
                signature, body = self.handler(path, iface, member, tuple(msg.body))
                reply = new_method_return(msg, signature, body)
            except LookupError:
                reply = new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod")
            with self._lock:
                self.conn.send(reply)

    def emit(self, path: str, interface: str, member: str, signature: str, body: tuple[Any, ...]) -> None:
        with self._lock:
            self.conn.send(new_signal(DBusAddress(path, interface=interface), member, signature, body))

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.conn.close()


class FakeLogind:
    """org.freedesktop.login1 with one session "7": GetSession, LockedHint (and SetLockedHint), Inhibit (a
    pipe), PrepareForSleep."""

    def __init__(self, address: str) -> None:
        self.locked = False
        self.inhibitors: list[int] = []  # read ends of the pipes whose write ends were handed out
        self.service = FakeService(address, "org.freedesktop.login1", self._handle)

    def _handle(
        self, path: str, iface: str, member: str, body: tuple[Any, ...]
    ) -> tuple[str, tuple[Any, ...]]:
        if member == "GetSession":
            return "o", (f"/org/freedesktop/login1/session/_3{body[0]}",)
        if member == "Get" and body == ("org.freedesktop.login1.Session", "LockedHint"):
            return "v", (("b", self.locked),)
        if member == "SetLockedHint":  # what GNOME Shell calls when its screen shield locks or unlocks
            self.locked = bool(body[0])
            return "", ()
        if member == "Inhibit":
            read_end, write_end = os.pipe()
            self.inhibitors.append(read_end)
            try:
                return "h", (write_end,)
            finally:
                threading.Timer(1.0, os.close, args=(write_end,)).start()  # after jeepney sent it
        raise LookupError(member)

    def prepare_for_sleep(self, going: bool) -> None:
        self.service.emit(
            "/org/freedesktop/login1", "org.freedesktop.login1.Manager", "PrepareForSleep", "b", (going,)
        )

    def inhibitor_released(self, index: int = 0) -> bool:
        """True when the agent closed the inhibitor fd (the pipe's read end sees EOF)."""
        import select

        fd = self.inhibitors[index]
        ready, _, _ = select.select([fd], [], [], 0)
        return bool(ready) and os.read(fd, 1) == b""

    def close(self) -> None:
        self.service.close()


class FakeGdm:
    """The one thing GNOME Shell asks GDM before it offers a lock screen: ``org.gnome.DisplayManager.Manager``'s
    ``Version`` (js/misc/loginManager.js, canLock), plus ``RegisterSession``. GDM itself needs systemd as PID 1
    and a seat, which a container has not."""

    def __init__(self, address: str, version: str = "43.0") -> None:
        self.version = version
        self.service = FakeService(address, "org.gnome.DisplayManager", self._handle)

    def _handle(
        self, path: str, iface: str, member: str, body: tuple[Any, ...]
    ) -> tuple[str, tuple[Any, ...]]:
        if member == "Get" and body == ("org.gnome.DisplayManager.Manager", "Version"):
            return "v", (("s", self.version),)
        if member == "RegisterSession":
            return "", ()
        raise LookupError(member)

    def close(self) -> None:
        self.service.close()


class FakeGnome:
    """org.gnome.Mutter.IdleMonitor and org.gnome.ScreenSaver on one connection each."""

    def __init__(self, address: str) -> None:
        self.idle_ms = 0
        self.active = False
        self.idle = FakeService(address, "org.gnome.Mutter.IdleMonitor", self._idle)
        self.saver = FakeService(address, "org.gnome.ScreenSaver", self._saver)

    def _idle(self, path: str, iface: str, member: str, body: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
        if member == "GetIdletime":
            return "t", (self.idle_ms,)
        raise LookupError(member)

    def _saver(
        self, path: str, iface: str, member: str, body: tuple[Any, ...]
    ) -> tuple[str, tuple[Any, ...]]:
        if member == "GetActive":
            return "b", (self.active,)
        if member == "Lock":
            self.active = True
            return "", ()
        raise LookupError(member)

    def close(self) -> None:
        self.idle.close()
        self.saver.close()
