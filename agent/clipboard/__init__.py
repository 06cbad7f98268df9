"""The clipboard guard (issue 17): customer data leaves the clipboard while the screen is protected.

:func:`create_clipboard` builds this session's backend from the desktop backend's name (X11, Windows, macOS),
or raises :class:`ClipboardError` saying why there is none: Wayland gives a background client no portable way
to read who owns, or to replace, another app's clipboard (``wlr-data-control`` exists on wlroots compositors
only, and GNOME offers none), so there the guard is reported as degraded instead.
"""

from __future__ import annotations

from agent.clipboard.base import ClipboardBackend, ClipboardError, Owner


def create_clipboard(desktop_backend: str, display: str | None = None) -> ClipboardBackend:
    if desktop_backend == "x11":
        from agent.clipboard.x11 import X11Clipboard

        return X11Clipboard(display)
    if desktop_backend == "windows":
        from agent.clipboard.windows import WindowsClipboard

        return WindowsClipboard()
    if desktop_backend == "macos":
        from agent.clipboard.macos import MacClipboard

        return MacClipboard()
    if desktop_backend == "wayland":
        raise ClipboardError(
            "Wayland lets no background app see or replace another app's clipboard: log in to an X11 "
            "session for the clipboard guard"
        )
    raise ClipboardError(f"no clipboard guard for the {desktop_backend!r} desktop backend")


__all__ = ["ClipboardBackend", "ClipboardError", "Owner", "create_clipboard"]
