"""What each OS uses, as pure functions of ``(environ, platform)`` (STYLE.md: the pynput/pystray model).

``platform`` is a ``sys.platform`` value ("linux", "win32", "darwin"); an environment override wins over the
OS default. Nothing here imports a backend or touches the OS, so tests ask for any OS on any machine.
:func:`agent.platform.resolve_platform` calls these once and bundles the answers into a ``Platform``; this
is the only module that reads ``sys.platform`` for a choice.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.platform.base import PlatformError

# Linux stands for every Unix desktop here: X11 or Wayland session, the Linux share signatures. What only
# Linux itself has (procfs, rtnetlink, notify-send, the posture probes) is a separate flag or choice.
OsFamily = Literal["linux", "windows", "macos"]

ENV_BACKEND = "MAMORI_DESKTOP_BACKEND"
BACKENDS = ("x11", "wayland", "windows", "macos", "fake")
ENV_POSTURE = "MAMORI_POSTURE_BACKEND"
ENV_NOTIFY = "MAMORI_NOTIFY_BACKEND"
ENV_TRAY = "PYSTRAY_BACKEND"


def _plat(platform: str | None) -> str:
    return sys.platform if platform is None else platform


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


@dataclass(frozen=True)
class OsFeatures:
    """What an OS offers the shared code, known from ``sys.platform`` alone (no environment, no I/O)."""

    name: OsFamily
    os_name: str  # sys.platform as reported to the server at enrolment and in heartbeats
    has_procfs: bool  # /proc with its per-process and /proc/net tables (Linux)
    has_netlink: bool  # rtnetlink pushes link/address/route changes (Linux)
    has_unix_sockets: bool  # AF_UNIX for the control socket (every POSIX build; not Windows)
    display_from_env: bool  # the desktop session is announced by $DISPLAY / $WAYLAND_DISPLAY (X11, Wayland)
    cover_font: str  # a Japanese-capable UI font; Tk (fontconfig on Linux) substitutes when it is missing


def os_family(platform: str | None = None) -> OsFamily:
    plat = _plat(platform)
    if plat == "win32":
        return "windows"
    if plat == "darwin":
        return "macos"
    return "linux"


def os_features(platform: str | None = None) -> OsFeatures:
    plat = _plat(platform)
    family = os_family(plat)
    return OsFeatures(
        name=family,
        os_name=plat,
        has_procfs=plat.startswith("linux"),
        has_netlink=plat == "linux",
        # The running interpreter decides too: AF_UNIX is missing from some Python builds.
        has_unix_sockets=plat != "win32" and hasattr(socket, "AF_UNIX"),
        display_from_env=family == "linux",
        cover_font={"windows": "Yu Gothic UI", "macos": "Hiragino Sans"}.get(family, "IPAGothic"),
    )


def backend_name(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """The desktop backend: ``$MAMORI_DESKTOP_BACKEND``, else the OS default (Wayland when the session is one)."""
    env = _env(environ)
    forced = env.get(ENV_BACKEND, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise PlatformError(
                f"{ENV_BACKEND}={forced!r} is not a backend; use one of {', '.join(BACKENDS)}"
            )
        return forced
    family = os_family(platform)
    if family != "linux":
        return family
    if env.get("XDG_SESSION_TYPE") == "wayland" or (env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY")):
        return "wayland"
    return "x11"


def posture_backend_name(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """The posture probe: ``$MAMORI_POSTURE_BACKEND``, else this OS's; any other name builds ``Unsupported``."""
    forced = _env(environ).get(ENV_POSTURE)
    if forced:
        return forced
    return {"linux": "linux", "win32": "windows", "darwin": "macos"}.get(_plat(platform), "unsupported")


def notify_backend_name(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str:
    """The notification backend: ``$MAMORI_NOTIFY_BACKEND``, else this OS's; "" when this OS has none."""
    forced = _env(environ).get(ENV_NOTIFY, "")
    if forced:
        return forced
    plat = _plat(platform)
    if plat.startswith("linux"):
        return "notify-send"
    return {"win32": "windows-toast", "darwin": "macos-osascript"}.get(plat, "")


def tray_backends(environ: Mapping[str, str] | None = None, platform: str | None = None) -> tuple[str, ...]:
    """pystray backends to try, in order: ``$PYSTRAY_BACKEND``, else AppIndicator then X11 on Linux."""
    forced = _env(environ).get(ENV_TRAY)
    if forced:
        return (forced,)
    family = os_family(platform)
    if family == "windows":
        return ("win32",)
    if family == "macos":
        return ("darwin",)
    return ("appindicator", "xorg")


def system_config_path(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where IT installs agent.toml on this OS (SPEC.md, "Agent configuration")."""
    family = os_family(platform)
    if family == "windows":
        return Path(_env(environ).get("PROGRAMDATA", r"C:\ProgramData")) / "Mamori" / "agent.toml"
    if family == "macos":
        return Path("/Library/Application Support/Mamori/agent.toml")
    return Path("/etc/mamori/agent.toml")
