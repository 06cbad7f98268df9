"""The desktop's screen saver on the D-Bus session bus, asked on X11 whether the session is locked.

Desktops on X11 lock with their own screen saver and say so on the session bus: KDE Plasma and Xfce
(xfce4-screensaver) as ``org.freedesktop.ScreenSaver``, GNOME on Xorg and gnome-screensaver as
``org.gnome.ScreenSaver``, Cinnamon and MATE under their own names. ``GetActive`` is true while the lock (or
blank) screen is up. Only a name that already has an owner is asked (``NameHasOwner``): asking an activatable
name would start a screen saver on a desktop that does not use it. Its answer is one more piece of evidence for
agent/platform/x11_idle.py beside the X screen saver state, a locker's keyboard grab and logind's LockedHint.
"""

from __future__ import annotations

import logging
import os
import time

from agent.platform.base import PlatformError
from agent.platform.session_bus import Bus, SessionBus

logger = logging.getLogger(__name__)

# (bus name, object path, interface), asked in this order.
SCREENSAVERS = (
    ("org.freedesktop.ScreenSaver", "/org/freedesktop/ScreenSaver", "org.freedesktop.ScreenSaver"),
    ("org.gnome.ScreenSaver", "/org/gnome/ScreenSaver", "org.gnome.ScreenSaver"),
    ("org.cinnamon.ScreenSaver", "/org/cinnamon/ScreenSaver", "org.cinnamon.ScreenSaver"),
    ("org.mate.ScreenSaver", "/org/mate/ScreenSaver", "org.mate.ScreenSaver"),
)
_DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
OWNER_RECHECK = 30.0  # seconds before a desktop with no screen saver on the bus is looked at again


def session_bus_available() -> bool:
    """Whether this process has a session bus to ask: $DBUS_SESSION_BUS_ADDRESS, or systemd's user bus."""
    if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return runtime is not None and os.path.exists(os.path.join(runtime, "bus"))


class DesktopScreenSaver:
    def __init__(self, bus: Bus | None = None) -> None:
        self._bus: Bus = bus or SessionBus()
        self._owner: tuple[str, str, str] | None = None
        self._recheck_at = 0.0

    def _find_owner(self) -> tuple[str, str, str] | None:
        now = time.monotonic()
        if self._owner is None and now < self._recheck_at:
            return None
        self._recheck_at = now + OWNER_RECHECK
        for saver in SCREENSAVERS:
            (owned,) = self._bus.call(*_DBUS, "NameHasOwner", signature="s", body=(saver[0],))
            if owned:
                self._owner = saver
                return saver
        self._owner = None
        return None

    def name(self) -> str | None:
        """The bus name of the desktop's screen saver, when one runs (for doctor and status)."""
        try:
            owner = self._owner or self._find_owner()
        except PlatformError:
            return None
        return owner[0] if owner else None

    def active(self) -> bool | None:
        """The running screen saver's ``GetActive``; None when none runs or the bus cannot be reached."""
        try:
            owner = self._owner or self._find_owner()
            if owner is None:
                return None
            (active,) = self._bus.call(*owner, "GetActive")
        except PlatformError as err:
            logger.debug("desktop screen saver not asked: %s", err)
            self._owner = None
            return None
        return bool(active)

    def close(self) -> None:
        close = getattr(self._bus, "close", None)
        if callable(close):
            close()
