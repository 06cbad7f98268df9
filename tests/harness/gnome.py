"""A real headless GNOME Shell session for tests: Debian's gnome-shell (mutter's headless native backend with a
virtual monitor, software rendering, no GPU) on a private session bus, as root, in a container.

What a container lacks, and what stands in for it (scripted fakes of system services, tests/harness/dbus_services.py):

- **systemd-logind** (needs systemd as PID 1): a fake ``org.freedesktop.login1`` on a private "system" bus, with
  session "7". GNOME Shell asks it for the session, sets its ``LockedHint`` when it locks and listens to its
  ``PrepareForSleep``; the agent reads the same ``LockedHint`` and takes its sleep inhibitor there.
- **GDM** (needs logind and a seat): GNOME Shell offers a lock screen only when ``org.gnome.DisplayManager``
  answers its ``Version`` (js/misc/loginManager.js, ``canLock``) and ``/run/systemd/seats`` exists
  (``haveSystemd``); a fake answers the version, and the directory is created when missing (root only).

Everything else is the real shell: Mutter's IdleMonitor, the screen shield and its lock screen,
``org.gnome.Shell.ScreenShield`` and the gjs ``org.gnome.ScreenSaver`` service D-Bus starts for it. GSettings use
the keyfile backend in the session's own config directory, so a test can set keys (``settings``) without dconf.

Every process is started in its own process group (the shell, and the session bus with the services it starts)
and ended by that group's id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jeepney import DBusAddress, HeaderFields, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import unwrap_msg

from tests.harness.dbus_services import FakeGdm, FakeLogind

SESSION_ID = "7"  # FakeLogind's session
SEATS = Path("/run/systemd/seats")
SCREENSAVER = ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver", "org.gnome.ScreenSaver")
IDLE_MONITOR = (
    "org.gnome.Mutter.IdleMonitor",
    "/org/gnome/Mutter/IdleMonitor/Core",
    "org.gnome.Mutter.IdleMonitor",
)
# Names the shell owns once it is up: the shell itself, its idle monitor, its screen shield (the lock screen).
READY_NAMES = ("org.gnome.Shell", "org.gnome.Mutter.IdleMonitor", "org.gnome.Shell.ScreenShield")
START_TIMEOUT = 60.0
WAYLAND_DISPLAY = "wayland-0"  # the first free name in a fresh XDG_RUNTIME_DIR


class GnomeShellFailed(RuntimeError):
    def __init__(self, what: str, log: str) -> None:
        super().__init__(f"{what}; gnome-shell's output ends with:\n{log[-3000:]}")


def _own_bus(path: Path, log: Path) -> subprocess.Popen[bytes]:
    """A dbus-daemon with the session configuration (service activation included) in its own process group."""
    address = f"unix:path={path}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={address}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while not accepts(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dbus-daemon for {path} did not start: {log.read_text(errors='replace')}")
        time.sleep(0.02)
    return proc


def accepts(path: Path) -> bool:
    """The daemon listens (its socket file exists a moment before it accepts connections)."""
    with contextlib.closing(socket.socket(socket.AF_UNIX)) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group ``proc`` leads, SIGKILL what is left after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _keyfile(settings: Mapping[str, Mapping[str, str]]) -> str:
    """GSettings' keyfile backend format: ``[org/gnome/desktop/screensaver]`` and GVariant text values."""
    lines = []
    for schema_path, keys in settings.items():
        lines.append(f"[{schema_path}]")
        lines += [f"{key}={value}" for key, value in keys.items()]
        lines.append("")
    return "\n".join(lines)


@dataclass
class BusMessage:
    """One message a bus monitor saw, in the order the bus routed them."""

    at: float  # time.monotonic() when the monitor read it
    kind: str  # "method_call", "method_return", "error", "signal"
    sender: str
    destination: str
    member: str
    serial: int
    reply_serial: int
    body: tuple[Any, ...]


@dataclass
class BusMonitor:
    """Every message on a bus (org.freedesktop.DBus.Monitoring.BecomeMonitor), recorded by a thread."""

    conn: DBusConnection
    messages: list[BusMessage] = field(default_factory=list)
    _stop: bool = False

    def __post_init__(self) -> None:
        monitoring = DBusAddress(
            "/org/freedesktop/DBus",
            bus_name="org.freedesktop.DBus",
            interface="org.freedesktop.DBus.Monitoring",
        )
        unwrap_msg(
            self.conn.send_and_get_reply(
                new_method_call(monitoring, "BecomeMonitor", "asu", ([], 0)), timeout=5
            )
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                msg = self.conn.receive(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:  # the bus went away
                return
            f = msg.header.fields
            self.messages.append(
                BusMessage(
                    at=time.monotonic(),
                    kind=msg.header.message_type.name,
                    sender=str(f.get(HeaderFields.sender, "")),
                    destination=str(f.get(HeaderFields.destination, "")),
                    member=str(f.get(HeaderFields.member, "")),
                    serial=msg.header.serial,
                    reply_serial=int(f.get(HeaderFields.reply_serial, 0)),
                    body=tuple(msg.body),
                )
            )

    def replies_to(self, call: BusMessage) -> list[BusMessage]:
        return [
            m
            for m in list(self.messages)
            if m.kind in ("method_return", "error")
            and m.reply_serial == call.serial
            and m.destination == call.sender
        ]

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.conn.close()


def session_env(session_bus: str, system_bus: str, runtime: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "XAUTHORITY")}
    env.update(
        DBUS_SESSION_BUS_ADDRESS=session_bus,
        DBUS_SYSTEM_BUS_ADDRESS=system_bus,
        XDG_RUNTIME_DIR=str(runtime),
        XDG_CONFIG_HOME=str(config),
        # The shell's state, caches and data (and Mesa's shader cache) stay in the test's folder, not in $HOME.
        XDG_DATA_HOME=str(config.parent / "data"),
        XDG_CACHE_HOME=str(config.parent / "cache"),
        XDG_STATE_HOME=str(config.parent / "state"),
        XDG_SESSION_TYPE="wayland",
        XDG_SESSION_ID=SESSION_ID,
        XDG_CURRENT_DESKTOP="GNOME",
        WAYLAND_DISPLAY=WAYLAND_DISPLAY,
        GSETTINGS_BACKEND="keyfile",
    )
    return env


@dataclass
class GnomeSession:
    session_bus: str
    system_bus: str
    runtime_dir: Path
    config_dir: Path
    log_path: Path
    logind: FakeLogind
    gdm: FakeGdm
    shell: subprocess.Popen[bytes]
    _conn: DBusConnection | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a program in this session: its buses, runtime dir and Wayland display, no X."""
        return session_env(self.session_bus, self.system_bus, self.runtime_dir, self.config_dir)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(
        self,
        destination: str,
        path: str,
        interface: str,
        method: str,
        signature: str = "",
        body: tuple[Any, ...] = (),
        timeout: float = 5.0,
    ) -> tuple[Any, ...]:
        """A method call on the session bus from outside the agent; a D-Bus error raises DBusErrorResponse."""
        with self._lock:
            if self._conn is None:
                self._conn = open_dbus_connection(bus=self.session_bus)
            addr = DBusAddress(path, bus_name=destination, interface=interface)
            reply = self._conn.send_and_get_reply(
                new_method_call(addr, method, signature, body), timeout=timeout
            )
        return tuple(unwrap_msg(reply))

    def has_owner(self, name: str) -> bool:
        (owned,) = self.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            (name,),
        )
        return bool(owned)

    def screensaver_active(self) -> bool:
        """GNOME Shell's own answer: is the lock screen up?"""
        (active,) = self.call(*SCREENSAVER, "GetActive")
        return bool(active)

    def idle_ms(self) -> int:
        (ms,) = self.call(*IDLE_MONITOR, "GetIdletime")
        return int(ms)

    def monitor(self) -> BusMonitor:
        return BusMonitor(open_dbus_connection(bus=self.session_bus))

    def wait_for(self, cond: Callable[[], object], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.shell.poll() is not None:
                raise GnomeShellFailed(
                    f"gnome-shell exited ({self.shell.returncode}) before {what}", self.log()
                )
            if time.monotonic() > deadline:
                raise GnomeShellFailed(f"timed out after {timeout} s waiting for {what}", self.log())
            time.sleep(0.1)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def need_gnome_shell() -> None:
    """Skip (a failure in CI: the ``gnome`` marker is required) when this machine cannot run the session."""
    missing = [tool for tool in ("gnome-shell", "gjs", "dbus-daemon") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (run .ci/run)")
    if not SEATS.exists() and os.geteuid() != 0:
        pytest.skip(f"{SEATS} is missing and only root can create it (GNOME Shell locks only with systemd)")


@contextmanager
def gnome_session(
    tmp: Path, settings: Mapping[str, Mapping[str, str]] | None = None
) -> Iterator[GnomeSession]:
    """Start gnome-shell --headless on private buses; yield once the shell, its idle monitor and its screen
    shield are on the session bus; end everything it started."""
    need_gnome_shell()
    if not SEATS.exists():
        SEATS.mkdir(parents=True, exist_ok=True)  # what systemd-logind creates at boot (module docstring)
    tmp.mkdir(parents=True, exist_ok=True)
    runtime = tmp / "runtime"
    runtime.mkdir(mode=0o700)
    config = tmp / "config"
    (config / "glib-2.0" / "settings").mkdir(parents=True)
    (config / "glib-2.0" / "settings" / "keyfile").write_text(_keyfile(settings or {}), encoding="utf-8")
    log = tmp / "gnome-shell.log"
    with contextlib.ExitStack() as stack:
        system = _own_bus(tmp / "system_bus", tmp / "system-bus.log")
        stack.callback(_end_group, system)
        session_bus = _own_bus(tmp / "session_bus", log)
        stack.callback(_end_group, session_bus)
        system_address = f"unix:path={tmp / 'system_bus'}"
        logind = FakeLogind(system_address)
        stack.callback(logind.close)
        gdm = FakeGdm(system_address)
        stack.callback(gdm.close)
        session_address = f"unix:path={tmp / 'session_bus'}"
        env = session_env(session_address, system_address, runtime, config)
        # Mesa's software renderer: the container has no GPU (mutter: "Created surfaceless renderer without GPU").
        env["LIBGL_ALWAYS_SOFTWARE"] = "1"
        with log.open("ab") as out:
            shell = subprocess.Popen(
                ["gnome-shell", "--headless", "--wayland", "--no-x11", "--virtual-monitor", "1280x800"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.callback(_end_group, shell)
        session = GnomeSession(session_address, system_address, runtime, config, log, logind, gdm, shell)
        stack.callback(session.close)

        def ready() -> bool:
            try:
                return all(session.has_owner(name) for name in READY_NAMES)
            except Exception:
                return False

        session.wait_for(ready, START_TIMEOUT, "GNOME Shell on the session bus")
        yield session
