"""Test helpers under Xvfb: a read-only X11 window list and a stand-in cover window.

``X11WindowList`` reads what any X11 client can read (EWMH _NET_CLIENT_LIST, _NET_WM_NAME, WM_CLASS,
_NET_WM_PID -> process name) and satisfies the Desktop protocol's window parts. It is used only until the
agent's own X11 backend is importable (``desktop_for``); then the tests run against the real backend.

``cover_window`` opens an override-redirect Tk window of the cover colour with a label, as the cover helper
does, for the self-check tests that must not depend on the overlay package.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from agent.platform import create_desktop
from agent.platform.base import Capabilities, Desktop, Monitor, PlatformError, Rect, Window
from agent.platform.linux_x11 import X11Desktop
from tests.harness.xdesktop import Box, XDesktop

COVER_APP = Path(__file__).with_name("coverapp.py")


class X11WindowList:
    def __init__(self, display: str) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self._X = X
        self._d: Any = xdisplay.Display(display)
        self._root = self._d.screen().root
        self._atoms = {
            n: self._d.intern_atom(n)
            for n in ("_NET_CLIENT_LIST", "_NET_WM_NAME", "UTF8_STRING", "_NET_WM_PID")
        }

    def capabilities(self) -> Capabilities:
        return Capabilities(backend="x11-test", window_list=True, window_pids=True)

    def idle_seconds(self) -> float:
        return 0.0

    def windows(self) -> list[Window]:
        out: list[Window] = []
        prop = self._root.get_full_property(self._atoms["_NET_CLIENT_LIST"], self._X.AnyPropertyType)
        for xid in prop.value if prop is not None else []:
            try:
                win = self._d.create_resource_object("window", int(xid))
                name = win.get_full_property(self._atoms["_NET_WM_NAME"], self._atoms["UTF8_STRING"])
                title = name.value.decode("utf-8", "replace") if name is not None else ""
                wm_class = (win.get_wm_class() or ("", ""))[1]
                pid_prop = win.get_full_property(self._atoms["_NET_WM_PID"], self._X.AnyPropertyType)
                pid = int(pid_prop.value[0]) if pid_prop is not None else None
                process = psutil.Process(pid).name() if pid else ""
                geom = win.get_geometry()
                pos = win.translate_coords(self._root, 0, 0)
                out.append(
                    Window(
                        int(xid), title, pid, process, Rect(-pos.x, -pos.y, geom.width, geom.height), wm_class
                    )
                )
            except (psutil.Error, Exception):
                continue
        return out

    def monitors(self) -> list[Monitor]:
        geom = self._root.get_geometry()
        return [Monitor(Rect(0, 0, geom.width, geom.height), primary=True)]

    def is_locked(self) -> bool:
        return False

    def lock(self) -> None:
        raise PlatformError("test window list cannot lock")


def desktop_for(desk: XDesktop) -> Desktop:
    """The agent's X11 backend when it can load, else the read-only test window list."""
    try:
        return create_desktop(backend="x11", display=desk.display)
    except PlatformError:
        return X11WindowList(desk.display)


class CoverWindow:
    """An override-redirect window of one colour with a label, over ``box``; ``close()`` removes it."""

    def __init__(self, desk: XDesktop, box: Box, colour: str, label: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                str(COVER_APP),
                "--geometry",
                f"{box.width}x{box.height}+{box.x}+{box.y}",
                "--colour",
                colour,
                "--label",
                label,
            ],
            env=desk.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise AssertionError("the test cover window did not start")
        assert json.loads(line)["ready"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)


class StampedX11Desktop(X11Desktop):
    """The X11 backend plus the optional ``window_list_stamp`` hook the share monitor uses when present.

    Reads _NET_CLIENT_LIST_STACKING on a connection of its own (one round trip) — the shape proposed for the
    backend itself (see docs/screen-share-guard.md, "Cost").
    """

    def __init__(self, display: str) -> None:
        super().__init__(display)
        from Xlib import X
        from Xlib import display as xdisplay

        self._stamp_d: Any = xdisplay.Display(display)
        self._stamp_atom = self._stamp_d.intern_atom("_NET_CLIENT_LIST_STACKING")
        self._any = X.AnyPropertyType

    def window_list_stamp(self) -> object:
        prop = self._stamp_d.screen().root.get_full_property(self._stamp_atom, self._any)
        return tuple(prop.value) if prop is not None else ()
