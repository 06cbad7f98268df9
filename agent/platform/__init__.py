"""This OS, resolved once (STYLE.md: the psutil and pynput/pystray models).

:func:`resolve_platform` answers every OS question once and returns a frozen :class:`Platform`: the desktop
backend (``MAMORI_DESKTOP_BACKEND`` wins; on Linux Wayland when the session is a Wayland one, else X11), the
posture probe (``MAMORI_POSTURE_BACKEND`` wins), the notification backend (``MAMORI_NOTIFY_BACKEND`` wins),
the pystray candidates (``PYSTRAY_BACKEND`` wins), the built-in share signatures, the system config path and
the capability flags of :class:`~agent.platform.selection.OsFeatures`. Shared code asks those flags (or the
module-level ``HAS_*`` constants below, for this machine), never ``sys.platform``.

Importing this package never touches the OS: backends are imported inside the ``create_*`` factories, and a
backend that cannot load is one :class:`PlatformError` that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.platform.base import Desktop, PlatformError
from agent.platform.selection import (
    BACKENDS,
    ENV_BACKEND,
    ENV_NOTIFY,
    ENV_POSTURE,
    ENV_TRAY,
    OsFamily,
    OsFeatures,
    backend_name,
    notify_backend_name,
    os_features,
    posture_backend_name,
    system_config_path,
    tray_backends,
)

if TYPE_CHECKING:
    from agent.platform.notifications import NotifyBackend, Runner
    from agent.posture.base import HostProbe
    from policy.model import ShareSignature

# For installers that freeze the agent (PyInstaller misses dynamically imported backends).
HIDDEN_IMPORTS = (
    "agent.platform.linux_x11",
    "agent.platform.linux_wayland",
    "agent.platform.windows",
    "agent.platform.macos",
    "agent.platform.fake",
    "agent.platform.logind",
    "agent.platform.posture_linux",
    "agent.platform.posture_windows",
    "agent.platform.posture_macos",
)

# This machine's OS features, for shared code that holds no Platform (the pystray ``HAS_MENU`` model).
HOST_OS: OsFeatures = os_features()
OS_NAME = HOST_OS.os_name
OS_FAMILY: OsFamily = HOST_OS.name
HAS_PROCFS = HOST_OS.has_procfs
HAS_NETLINK = HOST_OS.has_netlink
HAS_UNIX_SOCKETS = HOST_OS.has_unix_sockets
DISPLAY_FROM_ENV = HOST_OS.display_from_env
COVER_FONT = HOST_OS.cover_font


@dataclass(frozen=True)
class Platform:
    """One OS and session, resolved: which backend serves each OS-specific part, and what the OS offers."""

    features: OsFeatures
    desktop_backend: str  # one of BACKENDS
    posture_backend: str  # linux | windows | macos; any other name is an Unsupported probe saying so
    notify_backend: str  # notify-send | windows-toast | macos-osascript | none; "" when this OS has none
    tray_backends: tuple[str, ...]  # pystray backends to try, in order
    config_path: Path  # where IT installs agent.toml ($MAMORI_CONFIG is agent.config's, not the OS's)
    environ: Mapping[str, str] = field(repr=False, compare=False)  # what the overrides were read from

    @property
    def name(self) -> OsFamily:
        return self.features.name

    @property
    def os_name(self) -> str:
        """``sys.platform`` of this OS, as enrolment and heartbeats report it."""
        return self.features.os_name

    def create_desktop(
        self, lock_command: Sequence[str] = (), *, display: str | None = None, main_run_loop: bool = True
    ) -> Desktop:
        return create_desktop(
            lock_command, backend=self.desktop_backend, display=display, main_run_loop=main_run_loop
        )

    def create_posture_host(self) -> HostProbe:
        return create_posture_host(self.posture_backend)

    def create_notifications(self, runner: Runner | None = None) -> NotifyBackend:
        return create_notifications(
            self.notify_backend, environ=self.environ, platform=self.os_name, runner=runner
        )

    def share_signatures(self) -> tuple[ShareSignature, ...]:
        """The built-in screen-share signatures of this OS (the policy's are added by the share monitor)."""
        from agent.share.signatures import builtin_signatures

        return builtin_signatures(self.name)


def resolve_platform(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Platform:
    """This OS (or ``platform``, a ``sys.platform`` value) with ``environ``'s overrides, resolved once.

    Raises PlatformError when ``MAMORI_DESKTOP_BACKEND`` names no backend. The posture and notification
    overrides degrade instead (an ``Unsupported`` probe, a ``NullNotifications`` that says why), as they
    always have: a typo there must not stop the agent from protecting the screen.
    """
    env = os.environ if environ is None else environ
    plat = OS_NAME if platform is None else platform
    return Platform(
        features=os_features(plat),
        desktop_backend=backend_name(env, plat),
        posture_backend=posture_backend_name(env, plat),
        notify_backend=notify_backend_name(env, plat),
        tray_backends=tray_backends(env, plat),
        config_path=system_config_path(env, plat),
        environ=env,
    )


def create_desktop(
    lock_command: Sequence[str] = (),
    *,
    backend: str | None = None,
    display: str | None = None,
    main_run_loop: bool = True,
) -> Desktop:
    """Build the desktop backend for this session. Raises PlatformError naming the fix when it cannot.

    ``main_run_loop``: the main thread will run a GUI run loop (the tray); macOS needs it for lock before sleep.
    """
    name = backend or backend_name()
    try:
        if name == "x11":
            from agent.platform.linux_x11 import X11Desktop

            return X11Desktop(display, lock_command=lock_command)
        if name == "wayland":
            from agent.platform.linux_wayland import WaylandDesktop

            return WaylandDesktop(lock_command=lock_command)
        if name == "windows":
            from agent.platform.windows import WindowsDesktop

            return WindowsDesktop()
        if name == "macos":
            from agent.platform.macos import MacDesktop

            return MacDesktop(main_run_loop=main_run_loop)
        if name == "fake":
            from agent.platform.fake import FakeDesktop

            return FakeDesktop()
    except ImportError as err:
        raise PlatformError(
            f"desktop backend {name!r} cannot load ({err}); reinstall Mamori with its dependencies "
            f"or set {ENV_BACKEND} to one of {', '.join(BACKENDS)}"
        ) from err
    raise PlatformError(f"unknown desktop backend {name!r}; use one of {', '.join(BACKENDS)}")


def create_posture_host(backend: str | None = None) -> HostProbe:
    """The posture probe ``backend`` names (default: this OS's, or ``$MAMORI_POSTURE_BACKEND``)."""
    name = backend or posture_backend_name()
    if name == "linux":
        from agent.platform.posture_linux import LinuxHost

        return LinuxHost()
    if name == "windows":
        from agent.platform.posture_windows import WindowsHost

        return WindowsHost()
    if name == "macos":
        from agent.platform.posture_macos import MacHost

        return MacHost()
    from agent.posture.base import Unsupported

    return Unsupported(reason=f"no posture backend for {name}")


def create_notifications(
    backend: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    runner: Runner | None = None,
) -> NotifyBackend:
    """The notification backend ``backend`` names (default: this OS's, or ``$MAMORI_NOTIFY_BACKEND``).

    An unknown name, or an OS without a backend, is a ``NullNotifications`` that says why: the notifier
    reports it once as degraded and the tray still shows the state.
    """
    from agent.platform import notifications as notify

    env = os.environ if environ is None else environ
    plat = OS_NAME if platform is None else platform
    name = notify_backend_name(env, plat) if backend is None else backend
    run = notify.run_command if runner is None else runner
    if name == "none":
        return notify.NullNotifications(f"disabled by {ENV_NOTIFY}=none")
    if name == "notify-send":
        return notify.LinuxNotifySend(run, env)
    if name == "windows-toast":
        return notify.WindowsToast(run)
    if name == "macos-osascript":
        return notify.MacOsNotification(run)
    return notify.NullNotifications(f"no notification backend for {name or plat}")


def unix_stream_socket() -> socket.socket:
    """A new AF_UNIX stream socket (where ``HAS_UNIX_SOCKETS``); OSError on Windows, which has none here."""
    if sys.platform == "win32":
        raise OSError(errno.EAFNOSUPPORT, "no Unix sockets on Windows")
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)


def make_process_dpi_aware() -> None:
    """Windows: work in physical pixels, like GetWindowRect in the DPI-aware agent (agent/platform/windows.py).

    For the cover helper process; nothing to do elsewhere.
    """
    if sys.platform == "win32":
        import ctypes

        with contextlib.suppress(AttributeError, OSError):
            ctypes.windll.shcore.SetProcessDpiAwareness(2)


__all__ = [
    "BACKENDS",
    "COVER_FONT",
    "DISPLAY_FROM_ENV",
    "ENV_BACKEND",
    "ENV_NOTIFY",
    "ENV_POSTURE",
    "ENV_TRAY",
    "HAS_NETLINK",
    "HAS_PROCFS",
    "HAS_UNIX_SOCKETS",
    "HIDDEN_IMPORTS",
    "HOST_OS",
    "OS_FAMILY",
    "OS_NAME",
    "Desktop",
    "OsFamily",
    "OsFeatures",
    "Platform",
    "PlatformError",
    "backend_name",
    "create_desktop",
    "create_notifications",
    "create_posture_host",
    "make_process_dpi_aware",
    "notify_backend_name",
    "os_features",
    "posture_backend_name",
    "resolve_platform",
    "system_config_path",
    "tray_backends",
    "unix_stream_socket",
]
