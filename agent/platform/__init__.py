"""The desktop backend, chosen in one place (STYLE.md: pynput/pystray model).

``MAMORI_DESKTOP_BACKEND`` (x11 | wayland | windows | macos | fake) wins; otherwise the OS default: Windows,
macOS, or on Linux Wayland when the session is a Wayland one, else X11. Importing this package never touches
the OS: backends are imported inside :func:`create_desktop`, and every failure is collected into one
:class:`PlatformError` that lists what to do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from agent.platform.base import Desktop, PlatformError

ENV_BACKEND = "MAMORI_DESKTOP_BACKEND"
BACKENDS = ("x11", "wayland", "windows", "macos", "fake")

# For installers that freeze the agent (PyInstaller misses dynamically imported backends).
HIDDEN_IMPORTS = (
    "agent.platform.linux_x11",
    "agent.platform.linux_wayland",
    "agent.platform.windows",
    "agent.platform.macos",
    "agent.platform.fake",
    "agent.platform.logind",
)


def backend_name(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """The backend to use: the environment override, else the OS default."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    forced = env.get(ENV_BACKEND, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise PlatformError(
                f"{ENV_BACKEND}={forced!r} is not a backend; use one of {', '.join(BACKENDS)}"
            )
        return forced
    if plat == "win32":
        return "windows"
    if plat == "darwin":
        return "macos"
    if env.get("XDG_SESSION_TYPE") == "wayland" or (env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")):
        return "wayland"
    return "x11"


def create_desktop(
    lock_command: Sequence[str] = (), *, backend: str | None = None, display: str | None = None
) -> Desktop:
    """Build the desktop backend for this session. Raises PlatformError naming the fix when it cannot."""
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

            return MacDesktop()
        if name == "fake":
            from agent.platform.fake import FakeDesktop

            return FakeDesktop()
    except ImportError as err:
        raise PlatformError(
            f"desktop backend {name!r} cannot load ({err}); reinstall Mamori with its dependencies "
            f"or set {ENV_BACKEND} to one of {', '.join(BACKENDS)}"
        ) from err
    raise PlatformError(f"unknown desktop backend {name!r}; use one of {', '.join(BACKENDS)}")


__all__ = [
    "BACKENDS",
    "ENV_BACKEND",
    "HIDDEN_IMPORTS",
    "Desktop",
    "PlatformError",
    "backend_name",
    "create_desktop",
]
