"""Linux X11 backend (python-xlib).

- idle: MIT-SCREEN-SAVER ``QueryInfo`` (the server's own input idle counter; XTEST input resets it too).
- windows: EWMH ``_NET_CLIENT_LIST_STACKING`` (bottom to top), ``_NET_WM_NAME``, ``_NET_WM_PID``, ``_NET_WM_STATE``
  (fullscreen, hidden), ``_NET_ACTIVE_WINDOW``; geometry translated to root coordinates. ``window_list_stamp``:
  the stacking list alone (one round trip), so pollers re-read the windows only when it changes.
- monitors: RandR 1.5 monitors, else Xinerama, else the root window.
- locked: the X screensaver is on, or logind's ``LockedHint`` for this session.
- lock: agent.toml ``lock_command``, else ``loginctl lock-session``, else ``xdg-screensaver lock``.
- lock before sleep: logind ``PrepareForSleep`` with a delay inhibitor (agent/platform/logind.py).

python-xlib is not thread-safe: every request goes through ``self._lock``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.platform import logind
from agent.platform.base import Capabilities, Monitor, PlatformError, Rect, Window

logger = logging.getLogger(__name__)

LOGIND_INTERVAL = 2.0
LOCKER_GRACE = 10.0  # how long after a lock request a keyboard grab counts as the locker's
SCREENSAVER_ON = 1  # MIT-SCREEN-SAVER QueryInfo state
SS_REUSE = 0.05  # seconds one QueryInfo reply answers both idle_seconds() and is_locked()
SKIP_TYPES = ("_NET_WM_WINDOW_TYPE_DOCK", "_NET_WM_WINDOW_TYPE_DESKTOP")


class X11Desktop:
    """The X11 session named by ``display`` (default ``$DISPLAY``)."""

    def __init__(self, display: str | None = None, lock_command: Sequence[str] = ()) -> None:
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
            self._d: Any = xdisplay.Display(name)
        except Exception as err:  # python-xlib raises DisplayError, OSError, even OverflowError on odd names
            raise PlatformError(f"cannot open X display {name}: {err}; check DISPLAY and XAUTHORITY") from err
        self._X = X
        self._Xatom = Xatom
        self._errors: tuple[type[BaseException], ...] = (error.XError, error.ConnectionClosedError)
        self.display_name = name
        self.lock_command = tuple(lock_command)
        self._lock = threading.RLock()
        self._root = self._d.screen().root
        self._atoms: dict[str, int] = {}
        self._names: dict[int, tuple[float, str]] = {}  # pid -> (create_time, process name)
        self._has_ss = bool(self._d.has_extension("MIT-SCREEN-SAVER"))
        self._session = logind.Session.for_current()
        self._caps: Capabilities | None = None
        self._logind_checked = float("-inf")
        self._locker: subprocess.Popen[bytes] | None = None
        self._lock_requested_at: float | None = None
        self._lock_seen = False
        self._logind_locked = False
        self._watch: _ListWatch | None = None
        self._ss_cache: tuple[float, Any] | None = None
        self._watch_failed = False

    # ---- helpers ---------------------------------------------------------------------------------------
    def _atom(self, name: str) -> int:
        atom = self._atoms.get(name)
        if atom is None:
            atom = self._atoms[name] = int(self._d.intern_atom(name))
        return atom

    def _prop(self, win: Any, name: str, type_: int | None = None) -> Any:
        prop = win.get_full_property(
            self._atom(name), type_ if type_ is not None else self._X.AnyPropertyType
        )
        return None if prop is None else prop.value

    def _text(self, win: Any) -> str:
        value = self._prop(win, "_NET_WM_NAME", self._atom("UTF8_STRING"))
        if value is None:
            value = self._prop(win, "WM_NAME")
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

    # ---- Desktop ---------------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            notes: list[str] = []
            with self._lock:
                wm = self._prop(self._root, "_NET_SUPPORTING_WM_CHECK") is not None
            if not self._has_ss:
                notes.append("the X server lacks MIT-SCREEN-SAVER: idle time is unknown")
            if not wm:
                notes.append("no EWMH window manager: the window list is unavailable")
            lock_method = self._lock_methods()[0][0] if self._lock_methods() else ""
            if not lock_method:
                notes.append(
                    "no lock method: set lock_command in agent.toml or install loginctl/xdg-screensaver"
                )
            self._caps = Capabilities(
                backend="x11",
                idle=self._has_ss,
                window_list=wm,
                window_pids=wm,
                lock=bool(lock_method),
                lock_state=self._has_ss or self._session is not None,
                lock_before_sleep=self._session is not None and logind.available(),
                cover=True,
                notes=tuple(notes),
                lock_method=lock_method,
            )
        return self._caps

    def idle_seconds(self) -> float:
        if not self._has_ss:
            raise PlatformError("the X server has no MIT-SCREEN-SAVER extension; idle time is unknown")
        try:
            info = self._screensaver_info()
        except self._errors as err:
            raise PlatformError(f"X idle query failed: {err}") from err
        return float(info.idle) / 1000.0

    def _screensaver_info(self, reuse: bool = False) -> Any:
        """MIT-SCREEN-SAVER QueryInfo. The runtime asks idle_seconds() then is_locked() back to back on every
        presence tick: with ``reuse`` the reply idle_seconds() just got (at most SS_REUSE old) answers once,
        so a tick costs one X round trip instead of two."""
        now = time.monotonic()
        with self._lock:
            cached, self._ss_cache = self._ss_cache, None
            if reuse and cached is not None and now - cached[0] < SS_REUSE:
                return cached[1]
            info = self._root.screensaver_query_info()
            if not reuse:
                self._ss_cache = (now, info)
            return info

    def windows(self) -> list[Window]:
        try:
            with self._lock:
                return self._windows()
        except self._errors as err:
            raise PlatformError(f"X window list failed: {err}") from err

    def window_list_stamp(self) -> object:
        """A cheap value that changes whenever a top-level window appears, disappears, is restacked or retitled.

        Optional Desktop hook used by the share monitor (agent/share/monitor.py): it polls several times a
        second, and a full :meth:`windows` costs about nine X round trips per window. The stamp is a counter
        kept by a second, listen-only X connection (:class:`_ListWatch`): PropertyNotify on the root
        (``_NET_CLIENT_LIST_STACKING``) and on every client (title, class, pid). While nothing changes it costs
        one non-blocking read of that connection and no round trip. Without it (the watch could not start),
        the stacking list itself is the stamp: one round trip, and titles changed in place are not seen.
        """
        watch = self._ensure_watch()
        try:
            if watch is not None:
                return watch.stamp()
            with self._lock:
                ids = self._client_ids()
        except self._errors as err:
            raise PlatformError(f"X window list failed: {err}") from err
        return tuple(int(xid) for xid in ids) if ids is not None else ()

    @property
    def window_list_stamp_titles(self) -> bool:
        """Whether :meth:`window_list_stamp` also changes when a window is retitled in place."""
        return self._ensure_watch() is not None

    def _ensure_watch(self) -> _ListWatch | None:
        if self._watch is None and not self._watch_failed:
            try:
                self._watch = _ListWatch(self.display_name)
            except Exception as err:  # python-xlib raises many types on connect; the round-trip stamp remains
                logger.warning("window list watch unavailable (%s); polling the client list", err)
                self._watch_failed = True
        return self._watch

    def _client_ids(self) -> Any:
        ids = self._prop(self._root, "_NET_CLIENT_LIST_STACKING")
        if ids is None:
            ids = self._prop(self._root, "_NET_CLIENT_LIST")
        return ids

    def _windows(self) -> list[Window]:
        ids = self._client_ids()
        if ids is None:
            return []
        active = self._prop(self._root, "_NET_ACTIVE_WINDOW")
        active_id = int(active[0]) if active is not None and len(active) else 0
        out: list[Window] = []
        for xid in ids:
            # Degrade item by item (psutil's ad_value): a window may close while we read it.
            try:
                win = self._d.create_resource_object("window", int(xid))
                types = self._prop(win, "_NET_WM_WINDOW_TYPE")
                if types is not None and any(self._atom(t) in types for t in SKIP_TYPES):
                    continue
                attrs = win.get_attributes()
                state = self._prop(win, "_NET_WM_STATE")
                state = list(state) if state is not None else []
                hidden = self._atom("_NET_WM_STATE_HIDDEN") in state or attrs.map_state != self._X.IsViewable
                geom = win.get_geometry()
                origin = win.translate_coords(self._root, 0, 0)
                pid_value = self._prop(win, "_NET_WM_PID", self._Xatom.CARDINAL)
                pid = int(pid_value[0]) if pid_value is not None and len(pid_value) else None
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
                        fullscreen=self._atom("_NET_WM_STATE_FULLSCREEN") in state,
                        minimized=hidden,
                    )
                )
            except self._errors:
                continue
        return out

    def _frame_rect(self, win: Any, client: Rect) -> Rect | None:
        """The client area grown by the window manager's decorations (EWMH ``_NET_FRAME_EXTENTS``): the title
        bar shows the window title, which may itself be customer data (a customer's name in a CRM tab)."""
        extents = self._prop(win, "_NET_FRAME_EXTENTS", self._Xatom.CARDINAL)
        if extents is None or len(extents) != 4 or not any(extents):
            return None
        left, right, top, bottom = (int(v) for v in extents)
        return Rect(
            client.x - left, client.y - top, client.width + left + right, client.height + top + bottom
        )

    def monitors(self) -> list[Monitor]:
        with self._lock:
            try:
                if self._d.has_extension("RANDR"):
                    from Xlib.ext import randr

                    reply = randr.get_monitors(self._root, True)
                    found = [
                        Monitor(
                            Rect(m.x, m.y, m.width_in_pixels, m.height_in_pixels), primary=bool(m.primary)
                        )
                        for m in reply.monitors
                    ]
                    if found:
                        if not any(m.primary for m in found):
                            found[0] = Monitor(found[0].rect, primary=True)
                        return found
                if self._d.has_extension("XINERAMA"):
                    screens = self._d.xinerama_query_screens().screens
                    if screens:
                        return [
                            Monitor(Rect(s.x, s.y, s.width, s.height), primary=i == 0)
                            for i, s in enumerate(screens)
                        ]
            except self._errors as err:
                logger.debug("monitor query failed, using the root window: %s", type(err).__name__)
            geom = self._root.get_geometry()
        return [Monitor(Rect(0, 0, int(geom.width), int(geom.height)), primary=True)]

    def is_locked(self) -> bool:
        if self._has_ss:
            try:
                if self._screensaver_info(reuse=True).state == SCREENSAVER_ON:
                    return True
            except self._errors as err:
                raise PlatformError(f"X screensaver query failed: {err}") from err
        if self._locker_evidence():
            return True
        if self._session is None:
            return False
        # logind is asked over D-Bus at most every LOGIND_INTERVAL seconds (CPU budget of the idle agent).
        now = time.monotonic()
        if now - self._logind_checked >= LOGIND_INTERVAL:
            self._logind_checked = now
            self._logind_locked = self._session.locked_hint()
        return self._logind_locked

    def _lock_methods(self) -> list[tuple[str, list[str]]]:
        if self.lock_command:
            return [("command", list(self.lock_command))]
        methods: list[tuple[str, list[str]]] = []
        if self._session is not None and shutil.which("loginctl"):
            methods.append(("loginctl", ["loginctl", "lock-session", self._session.session_id]))
        if shutil.which("xdg-screensaver"):
            methods.append(("xdg-screensaver", ["xdg-screensaver", "lock"]))
        return methods

    def lock(self) -> None:
        methods = self._lock_methods()
        if not methods:
            raise PlatformError("no lock method: set lock_command in agent.toml or install loginctl")
        failures = []
        for name, argv in methods:
            problem, running = start_locker(argv)
            if problem is None:
                self._locker = running
                self._lock_requested_at = time.monotonic()
                self._lock_seen = False
                return
            failures.append(f"{name}: {problem}")
        raise PlatformError("cannot lock the session (" + "; ".join(failures) + ")")

    def _locker_evidence(self) -> bool:
        """After our lock request: is a screen locker holding the session?

        Lockers such as i3lock or xsecurelock neither start the X screensaver nor tell logind. They do grab the
        keyboard, or keep running until unlocked. This is only asked after a lock request, because ordinary
        programs grab the keyboard briefly (menus, drags).
        """
        if self._lock_requested_at is None:
            return False
        if self._locker is not None and self._locker.poll() is None:
            return True
        grabbed = self._keyboard_grabbed_elsewhere()
        if grabbed:
            self._lock_seen = True
        elif self._lock_seen or time.monotonic() - self._lock_requested_at > LOCKER_GRACE:
            self._lock_requested_at = None  # unlocked again, or no locker ever grabbed: stop asking
        return grabbed

    def _keyboard_grabbed_elsewhere(self) -> bool:
        X = self._X
        with self._lock:
            status = self._root.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
            if status == X.GrabSuccess:
                self._d.ungrab_keyboard(X.CurrentTime)
                self._d.flush()
        return bool(status == X.AlreadyGrabbed)

    def watch_sleep(self, before_sleep: Callable[[], None]) -> None:
        if self._session is None:
            raise PlatformError("no logind session: lock before sleep is unavailable")
        logind.watch_sleep(before_sleep)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        with self._lock, contextlib.suppress(*self._errors):
            self._d.close()


# The properties of a client whose change can change what the share detector sees (agent/share/detect.py).
WATCHED_WINDOW_PROPS = ("_NET_WM_NAME", "WM_NAME", "WM_CLASS", "_NET_WM_PID")
CLIENT_LISTS = ("_NET_CLIENT_LIST_STACKING", "_NET_CLIENT_LIST")


class _ListWatch:
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


def run_locker(argv: Sequence[str], settle: float = 1.0) -> str | None:
    """Start a lock program; None when it succeeded or is still running (many lockers block until unlock)."""
    return start_locker(argv, settle)[0]


def start_locker(
    argv: Sequence[str], settle: float = 1.0
) -> tuple[str | None, subprocess.Popen[bytes] | None]:
    """Start a lock program: (problem or None, the process when it is still running after ``settle``)."""
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as err:
        return f"cannot run {argv[0]}: {err.strerror}", None
    try:
        _, err_out = proc.communicate(timeout=settle)
    except subprocess.TimeoutExpired:
        return None, proc
    if proc.returncode != 0:
        text = err_out.decode(errors="replace").strip().splitlines()
        return f"{argv[0]} exited {proc.returncode}" + (f": {text[-1]}" if text else ""), None
    return None, None
