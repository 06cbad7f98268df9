"""The EWMH window list of an X11 session as :class:`Window` values (used by agent/platform/linux_x11.py).

- :class:`WindowReader`: ``_NET_CLIENT_LIST_STACKING`` (bottom to top), ``_NET_WM_NAME``, ``_NET_WM_PID`` (else
  the X-Resource extension's client pid),
  ``_NET_WM_STATE`` (fullscreen, hidden), ``_NET_ACTIVE_WINDOW``, ``_NET_FRAME_EXTENTS``; geometry translated to
  root coordinates.
- :class:`ListWatch`: a second, listen-only connection that counts changes of that list and of the clients'
  titles, so pollers re-read the windows only when something changed.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from agent.platform.base import Rect, Window
from agent.platform.x11_display import XDisplay

SKIP_TYPES = ("_NET_WM_WINDOW_TYPE_DOCK", "_NET_WM_WINDOW_TYPE_DESKTOP")
# The properties of a client whose change can change what the share detector sees (agent/share/detect.py).
WATCHED_WINDOW_PROPS = ("_NET_WM_NAME", "WM_NAME", "WM_CLASS", "_NET_WM_PID")
CLIENT_LISTS = ("_NET_CLIENT_LIST_STACKING", "_NET_CLIENT_LIST")


class WindowReader:
    """Reads the window manager's client list and each client's properties. Callers hold ``display.lock``."""

    def __init__(self, display: XDisplay) -> None:
        self._x = display
        self._names: dict[int, tuple[float, str]] = {}  # pid -> (create_time, process name)

    def has_window_manager(self) -> bool:
        """Whether an EWMH window manager runs (``_NET_SUPPORTING_WM_CHECK`` on the root)."""
        return self._x.prop(self._x.root, "_NET_SUPPORTING_WM_CHECK") is not None

    def client_ids(self) -> Any:
        """The client list, bottom to top (None without a window manager): one round trip."""
        ids = self._x.prop(self._x.root, "_NET_CLIENT_LIST_STACKING")
        if ids is None:
            ids = self._x.prop(self._x.root, "_NET_CLIENT_LIST")
        return ids

    def windows(self) -> list[Window]:
        x = self._x
        ids = self.client_ids()
        if ids is None:
            return []
        active = x.prop(x.root, "_NET_ACTIVE_WINDOW")
        active_id = int(active[0]) if active is not None and len(active) else 0
        out: list[Window] = []
        for xid in ids:
            # Degrade item by item (psutil's ad_value): a window may close while we read it.
            try:
                win = x.d.create_resource_object("window", int(xid))
                types = x.prop(win, "_NET_WM_WINDOW_TYPE")
                if types is not None and any(x.atom(t) in types for t in SKIP_TYPES):
                    continue
                attrs = win.get_attributes()
                state = x.prop(win, "_NET_WM_STATE")
                state = list(state) if state is not None else []
                hidden = x.atom("_NET_WM_STATE_HIDDEN") in state or attrs.map_state != x.X.IsViewable
                geom = win.get_geometry()
                origin = win.translate_coords(x.root, 0, 0)
                pid, pid_source = self._pid(win, int(xid))
                wm_class = win.get_wm_class()
                client = Rect(-origin.x, -origin.y, int(geom.width), int(geom.height))
                out.append(
                    Window(
                        id=int(xid),
                        title=self._text(win),
                        pid=pid,
                        process_name=self._process_name(pid),
                        rect=client,
                        frame=self._frame_rect(win, client),
                        wm_class=wm_class[1] if wm_class else "",
                        active=int(xid) == active_id,
                        fullscreen=x.atom("_NET_WM_STATE_FULLSCREEN") in state,
                        minimized=hidden,
                        pid_source=pid_source,
                    )
                )
            except x.errors:
                continue
        return out

    def _pid(self, win: Any, xid: int) -> tuple[int | None, str]:
        """The window's process: ``_NET_WM_PID`` when the client set it, else the X server's own record of the
        connection that created the window (X-Resource 1.2 ``QueryClientIds``, local clients only), which
        xmessage, many Java, Wine and older toolkit windows need: they never set ``_NET_WM_PID``."""
        value = self._x.prop(win, "_NET_WM_PID", self._x.Xatom.CARDINAL)
        if value is not None and len(value) and int(value[0]) > 0:
            return int(value[0]), "net_wm_pid"
        if not self._x.has_xres:
            return None, ""
        from Xlib.ext import res

        reply = self._x.d.res_query_client_ids([{"client": xid, "mask": res.LocalClientPIDMask}])
        for item in reply.ids:
            if item.spec.mask & res.LocalClientPIDMask and len(item.value):
                return int(item.value[0]), "xres"
        return None, ""

    def _text(self, win: Any) -> str:
        value = self._x.prop(win, "_NET_WM_NAME", self._x.atom("UTF8_STRING"))
        if value is None:
            value = self._x.prop(win, "WM_NAME")
        if value is None:
            return ""
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return str(value)

    def _process_name(self, pid: int | None) -> str:
        if not pid:
            return ""
        import psutil

        try:
            proc = psutil.Process(pid)
            created = proc.create_time()
            cached = self._names.get(pid)
            if cached and cached[0] == created:
                return cached[1]
            name = proc.name()
        except (psutil.Error, OSError):
            return ""
        if len(self._names) > 512:
            self._names.clear()
        self._names[pid] = (created, name)
        return name

    def _frame_rect(self, win: Any, client: Rect) -> Rect | None:
        """The client area grown by the window manager's decorations (EWMH ``_NET_FRAME_EXTENTS``): the title
        bar shows the window title, which may itself be customer data (a customer's name in a CRM tab)."""
        extents = self._x.prop(win, "_NET_FRAME_EXTENTS", self._x.Xatom.CARDINAL)
        if extents is None or len(extents) != 4 or not any(extents):
            return None
        left, right, top, bottom = (int(v) for v in extents)
        return Rect(
            client.x - left, client.y - top, client.width + left + right, client.height + top + bottom
        )


class ListWatch:
    """A listen-only X connection: counts changes of the client list and of the clients' titles.

    Events queue up in the connection's socket until :meth:`stamp` reads them, so an idle desktop costs
    nothing between calls. New clients get PropertyChangeMask selected as soon as the list changes, before the
    caller re-reads the windows, so a title set later is never missed. Callers serialise (one lock).
    """

    def __init__(self, display_name: str) -> None:
        from Xlib import X, error
        from Xlib import display as xdisplay

        self._X = X
        self._errors: tuple[type[BaseException], ...] = (error.XError, error.ConnectionClosedError)
        self._d: Any = xdisplay.Display(display_name)
        # A client may vanish before its events are selected: BadWindow arrives asynchronously and means nothing.
        self._d.set_error_handler(lambda *_args: None)
        self._root = self._d.screen().root
        self._lists = [int(self._d.intern_atom(name)) for name in CLIENT_LISTS]
        self._props = frozenset(int(self._d.intern_atom(name)) for name in WATCHED_WINDOW_PROPS)
        self._lock = threading.Lock()
        self._watched: set[int] = set()
        self.generation = 0
        self._root.change_attributes(event_mask=X.PropertyChangeMask)
        self._rewatch()

    def _rewatch(self) -> None:
        ids: set[int] = set()
        for atom in self._lists:
            prop = self._root.get_full_property(atom, self._X.AnyPropertyType)
            if prop is not None:
                ids = {int(v) for v in prop.value}
                break
        for xid in ids - self._watched:
            self._d.create_resource_object("window", xid).change_attributes(
                event_mask=self._X.PropertyChangeMask
            )
        self._watched = ids
        self._d.flush()

    def stamp(self) -> int:
        with self._lock:
            list_changed = False
            while self._d.pending_events():
                event = self._d.next_event()
                if event.type != self._X.PropertyNotify:
                    continue
                if event.window.id == self._root.id:
                    if event.atom in self._lists:
                        list_changed = True
                elif event.atom in self._props:
                    self.generation += 1
            if list_changed:
                self.generation += 1
                self._rewatch()
            return self.generation

    def close(self) -> None:
        with self._lock, contextlib.suppress(*self._errors):
            self._d.close()
