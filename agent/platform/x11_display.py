"""The X connection the X11 backend's parts share (agent/platform/linux_x11.py).

python-xlib is imported here, when the backend is built, never at import time (STYLE.md: pynput opens a display
on import). python-xlib is not thread-safe: every request on :attr:`XDisplay.d` goes through :attr:`XDisplay.lock`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from agent.platform.base import PlatformError


class XDisplay:
    """The X display named by ``display`` (default ``$DISPLAY``), with its root window and interned atoms."""

    def __init__(self, display: str | None = None) -> None:
        try:
            from Xlib import X, Xatom, error
            from Xlib import display as xdisplay
        except ImportError as err:
            raise PlatformError(
                "python-xlib is not installed; reinstall Mamori with its dependencies"
            ) from err
        name = display or os.environ.get("DISPLAY")
        if not name:
            raise PlatformError("no X display: DISPLAY is not set; run the agent inside the desktop session")
        try:
            self.d: Any = xdisplay.Display(name)
        except Exception as err:  # python-xlib raises DisplayError, OSError, even OverflowError on odd names
            raise PlatformError(f"cannot open X display {name}: {err}; check DISPLAY and XAUTHORITY") from err
        self.name = name
        self.X: Any = X
        self.Xatom: Any = Xatom
        self.errors: tuple[type[BaseException], ...] = (error.XError, error.ConnectionClosedError)
        self.lock = threading.RLock()
        self.root: Any = self.d.screen().root
        self._atoms: dict[str, int] = {}
        # X-Resource 1.2 tells which local process created a window (agent/platform/x11_windows.py).
        self.has_xres = self._xres_client_ids()
        # Requests without a reply (e.g. selecting events on a window that just closed) report errors
        # asynchronously; python-xlib's default handler only prints them. The requests that matter have
        # replies and raise where they are made, so stray BadWindow/BadDrawable from vanished windows are
        # dropped here instead of reaching the agent (issue 11: a window closed from outside).
        self.d.set_error_handler(lambda *_args: None)

    def _xres_client_ids(self) -> bool:
        if not self.has_extension("X-Resource"):
            return False
        try:
            version = self.d.res_query_version()
        except self.errors:
            return False
        return (int(version.server_major), int(version.server_minor)) >= (1, 2)

    def has_extension(self, name: str) -> bool:
        return bool(self.d.has_extension(name))

    def atom(self, name: str) -> int:
        atom = self._atoms.get(name)
        if atom is None:
            atom = self._atoms[name] = int(self.d.intern_atom(name))
        return atom

    def prop(self, win: Any, name: str, type_: int | None = None) -> Any:
        """The value of property ``name`` on ``win`` (any type unless ``type_``), None when it is not set."""
        prop = win.get_full_property(self.atom(name), type_ if type_ is not None else self.X.AnyPropertyType)
        return None if prop is None else prop.value

    def close(self) -> None:
        with self.lock, contextlib.suppress(*self.errors):
            self.d.close()
