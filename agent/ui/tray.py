"""The tray icon (pystray) and the worker's actions (issue 7, item 1).

Threads: :meth:`Tray.run` owns the main thread (pystray must on macOS). A refresher thread re-reads the
runtime's ``status_provider()`` every ``refresh_interval`` seconds or when asked through the tray's queue
(:meth:`Tray.refresh`, :meth:`Tray.show_ack`, ...: safe from any thread) and updates icon, tooltip and menu. Tk
dialogs run on the :class:`TkHost` thread. What the worker asks for goes out as one-line commands, to a
``queue.Queue[str]`` or a callback:

    step_away                         protect now
    pause <minutes> <reason_code>     only sent when the policy allows; minutes <= pause_max
    resume
    quit                              only sent when the policy allows; the runtime stops, then calls stop()
    acknowledge <policy_id> <version> the worker acknowledged that policy version (see agent.ui.ack.AckFlow)

Backend: $PYSTRAY_BACKEND wins; else on Linux AppIndicator (menus) when importable, else X11 (``xorg``, no
menu: a click opens the status window with the same actions); Windows ``win32``, macOS ``darwin``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agent.platform import tray_backends
from agent.platform.base import Capabilities
from agent.ui.icons import Panel, TrayState, icon_image, panel_theme
from agent.ui.tkhost import TkHost, TkUnavailableError
from agent.ui.view import StatusView, build_view
from core.errors import MamoriError
from policy.model import Policy

if TYPE_CHECKING:
    from agent.ui.ack import Acknowledgement

logger = logging.getLogger(__name__)

Translate = Callable[..., str]

MENU_BACKENDS = ("appindicator", "gtk", "win32", "darwin")


class TrayUnavailableError(MamoriError):
    """No tray backend could start; carries every backend's failure and what to do."""

    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        detail = "; ".join(f"{name}: {reason}" for name, reason in failures)
        super().__init__(
            f"no system tray available ({detail}); run in a desktop session with a tray, "
            "install AppIndicator support (gir1.2-ayatanaappindicator3-0.1 python3-gi) or use --no-tray"
        )


def backend_candidates(environ: Mapping[str, str] | None = None, platform: str | None = None) -> list[str]:
    """pystray backends to try, in order ($PYSTRAY_BACKEND wins), as :mod:`agent.platform` resolves them."""
    return list(tray_backends(environ, platform))


def load_pystray(candidates: Sequence[str]) -> tuple[Any, str]:
    """Import pystray with the first backend that loads; returns (module, backend name).

    pystray picks its backend once, at import, from $PYSTRAY_BACKEND; a failed import leaves a half-imported
    package behind, so it is removed from sys.modules before the next candidate.
    """
    failures: list[tuple[str, str]] = []
    previous = os.environ.get("PYSTRAY_BACKEND")
    try:
        for name in candidates:
            os.environ["PYSTRAY_BACKEND"] = name
            for mod in [m for m in sys.modules if m == "pystray" or m.startswith("pystray.")]:
                del sys.modules[mod]
            try:
                import pystray

                return pystray, name
            except Exception as err:  # ImportError, or Xlib's DisplayNameError when there is no X server
                failures.append((name, f"{type(err).__name__}: {err}"))
    finally:
        if previous is None:
            os.environ.pop("PYSTRAY_BACKEND", None)
        else:
            os.environ["PYSTRAY_BACKEND"] = previous
    raise TrayUnavailableError(failures)


class Tray:
    """The worker's tray icon and the actions behind its menu and status window."""

    def __init__(
        self,
        translator: Translate,
        status_provider: Callable[[], Mapping[str, Any]],
        commands: queue.Queue[str] | Callable[[str], None],
        capabilities: Capabilities | None = None,
        *,
        reported_provider: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
        policy_provider: Callable[[], Policy | None] | None = None,
        panel: Panel | None = None,
        refresh_interval: float = 2.0,
        ui: TkHost | None = None,
        name: str = "Mamori",
        backends: Sequence[str] | None = None,
    ) -> None:
        self._t = translator
        # The worker's last acknowledgement of a policy id (AckFlow.acknowledged), for "what changed".
        self.previous_ack: Callable[[str], Acknowledgement | None] | None = None
        self._status_provider = status_provider
        self._commands = commands
        self.capabilities = capabilities
        self._reported = reported_provider
        self._policy = policy_provider
        self.panel: Panel = panel or panel_theme()
        self._interval = refresh_interval
        self._ui = ui
        self._own_ui = ui is None
        self._name = name
        self._backends = backends
        self._inbox: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._stopped = threading.Event()
        self._icon: Any = None
        self._pystray: Any = None
        self.backend: str | None = None
        self.state: TrayState | None = None
        self._view: StatusView | None = None
        self._lock = threading.Lock()
        self._pump: _XorgPump | None = None

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def has_menu(self) -> bool:
        return bool(self._icon is not None and getattr(self._icon, "HAS_MENU", False))

    def run(self) -> None:
        """Show the icon and block until :meth:`stop` (call on the main thread)."""
        candidates = list(self._backends) if self._backends is not None else backend_candidates()
        pystray, self.backend = load_pystray(candidates)
        self._pystray = pystray
        view = self._read_view()
        self._icon = pystray.Icon(
            self._name,
            icon=icon_image(view.state, self.panel, 64),
            title=backend_title(self.backend, view),
            menu=pystray.Menu(self._menu_items),
        )
        if self.backend == "xorg":
            _enable_xorg_clicks(self._icon)  # before run(): the window exists, no other thread uses X yet
            self._pump = _XorgPump.install(self._icon)
            if self._pump is not None:
                # No tooltip and no menu in pystray's X11 backend: ours, drawn with Tk (issue 12, item 2).
                popups = XorgPopups(self)
                self._pump.on_hover = popups.hover
                self._pump.on_menu = popups.show_menu
        self.state = view.state
        logger.info("tray backend %s (menu: %s)", self.backend, self.has_menu)
        self._icon.run(setup=self._setup)

    def _setup(self, icon: Any) -> None:
        self._on_icon_thread(lambda: setattr(icon, "visible", True))
        threading.Thread(target=self._refresh_loop, name="mamori-tray", daemon=True).start()

    def stop(self) -> None:
        """Remove the icon and end :meth:`run` (from any thread)."""
        self._stopped.set()
        self._inbox.put(None)
        icon = self._icon
        if icon is not None:
            self._on_icon_thread(icon.stop)
        if self._own_ui and self._ui is not None:
            self._ui.stop()

    # ----------------------------------------------------------------------- the tray's queue (in)

    def refresh(self) -> None:
        """Re-read the status now (e.g. the presence stage or a check changed)."""
        self._inbox.put(lambda: None)

    def set_translator(self, translator: Translate) -> None:
        """A new policy brought [messages] overrides or the language changed."""
        self._t = translator
        self.refresh()

    def _refresh_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                job = self._inbox.get(timeout=self._interval)
            except queue.Empty:
                job = None if self._stopped.is_set() else (lambda: None)
            if job is None:
                if self._stopped.is_set():
                    return
                continue
            try:
                job()
                self._apply(self._read_view())
            except Exception:
                logger.exception("tray refresh failed")

    def _status(self) -> Mapping[str, Any]:
        """The runtime's status with the policy's display title (the worker reads names, not ids)."""
        policy = self._policy() if self._policy else None
        return with_policy_title(self._status_provider(), policy, str(getattr(self._t, "language", "en")))

    def _read_view(self) -> StatusView:
        try:
            status = self._status()
        except Exception:
            logger.exception("status provider failed")
            status = {"degraded": ["status"]}
        view = build_view(self._t, status)
        with self._lock:
            self._view = view
        return view

    def _apply(self, view: StatusView) -> None:
        icon = self._icon
        if icon is None:
            return
        if self._pump is not None:
            self._pump.post(self._pump.ensure_docked)
        self._on_icon_thread(lambda: self._apply_to(icon, view))

    def _on_icon_thread(self, job: Callable[[], None]) -> None:
        """Run an icon update where the backend wants it (X11: its main loop; others are thread-safe)."""
        if self._pump is not None:
            self._pump.post(job)
        else:
            job()

    def _apply_to(self, icon: Any, view: StatusView) -> None:
        if view.state != self.state:
            logger.debug("tray state %s -> %s", self.state, view.state)
            image = icon_image(view.state, self.panel, 64)
            if self._pump is not None:
                self._pump.set_image(image)
            else:
                icon.icon = image
            self.state = view.state
            logger.debug("tray icon now %s", view.state)
        title = backend_title(self.backend, view)
        if icon.title != title:
            icon.title = title
        if self.backend == "xorg" and view.tooltip != title:
            _set_net_wm_name(icon, view.tooltip)
        if self.has_menu:
            icon.update_menu()

    def view(self) -> StatusView:
        with self._lock:
            if self._view is not None:
                return self._view
        return self._read_view()

    # --------------------------------------------------------------------------------- the menu

    def _menu_items(self) -> Iterator[Any]:
        ps = self._pystray
        item, sep = ps.MenuItem, ps.Menu.SEPARATOR
        t = self._t
        view = self.view()
        # The default item is what a click on a menu-less icon does: open the status window.
        yield item(
            t("tray.menu.open_status"), self._on(self.show_status), default=True, visible=self.has_menu
        )
        yield item(t(f"tray.state.{view.state.value}"), None, enabled=False)
        for line in view.lines:
            yield item(line, None, enabled=False)
        yield sep
        yield item(t("tray.menu.step_away"), self._on(self.step_away))
        yield item(t("tray.menu.reported"), self._on(self.show_reported))
        yield item(t("tray.menu.view_policy"), self._on(self.show_policy))
        yield item(t("tray.menu.acknowledge"), self._on(self.show_ack), enabled=view.policy_id is not None)
        if view.paused:
            yield item(t("tray.menu.resume"), self._on(self.resume))
        elif view.permissions.allow_pause:
            yield item(t("tray.menu.pause"), self._on(self.ask_pause))
        if view.permissions.allow_quit:
            yield sep
            yield item(t("tray.menu.quit"), self._on(self.quit))

    @staticmethod
    def _on(action: Callable[[], None]) -> Callable[[Any, Any], None]:
        def handler(_icon: Any, _item: Any) -> None:
            action()

        return handler

    # ------------------------------------------------------------------------- actions (out)

    def _send(self, command: str) -> None:
        logger.info("tray command %s", command.split(" ", maxsplit=1)[0])
        if isinstance(self._commands, queue.Queue):
            self._commands.put(command)
        else:
            self._commands(command)
        self.refresh()

    def step_away(self) -> None:
        self._send("step_away")

    def pause(self, minutes: int, reason: str) -> None:
        perms = self._read_view().permissions  # the policy may have changed since the dialog opened
        if not perms.allow_pause:
            logger.warning("pause refused: the policy does not allow it")
            return
        minutes = max(1, min(int(minutes), perms.pause_max_minutes))
        self._send(f"pause {minutes} {reason.split(maxsplit=1)[0] if reason.strip() else 'other'}")

    def resume(self) -> None:
        self._send("resume")

    def quit(self) -> None:
        if not self._read_view().permissions.allow_quit:
            logger.warning("quit refused: the policy does not allow it")
            return
        self._send("quit")

    def acknowledge(self, policy_id: str, version: int) -> None:
        self._send(f"acknowledge {policy_id} {version}")

    # --------------------------------------------------------------------- windows (Tk thread)

    def _tk(self) -> TkHost | None:
        if self._ui is None:
            self._ui = TkHost()
        try:
            return self._ui.start()
        except TkUnavailableError as err:
            logger.error("%s", err)
            return None

    def show_status(self) -> None:
        from agent.ui.statuswindow import StatusWindow

        ui = self._tk()
        if ui is None:
            return

        def present(root: Any) -> None:
            window = ui.objects.get("status")
            if not isinstance(window, StatusWindow):
                window = ui.objects["status"] = StatusWindow(root, self._t, self._status, self)
            window.present()

        ui.call(present)

    def ask_pause(self) -> None:
        from agent.ui.statuswindow import show_pause_dialog

        perms = self._read_view().permissions
        ui = self._tk()
        if ui is None or not perms.allow_pause:
            return
        ui.call(lambda root: show_pause_dialog(root, self._t, perms.pause_max_minutes, self.pause))

    def show_reported(self) -> None:
        from agent.ui.statuswindow import show_text_window

        ui = self._tk()
        if ui is None:
            return
        records = self._reported() if self._reported else []
        text = reported_text(self._t, records)
        raw = (
            (self._t("reported.raw"), self._t("reported.table"), reported_json(records)) if records else None
        )
        ui.call(
            lambda root: show_text_window(root, self._t("status.reported.title"), text, "reported", raw=raw)
        )

    def show_policy(self) -> None:
        from agent.ui.statuswindow import show_text_window

        ui = self._tk()
        if ui is None:
            return
        text = policy_text(self._t, self._policy() if self._policy else None)
        ui.call(lambda root: show_text_window(root, self._t("tray.menu.view_policy"), text, "policy"))

    def show_ack(self) -> None:
        """Open the acknowledgement dialog for the policy in effect (safe from any thread)."""
        policy = self._policy() if self._policy else None
        if policy is not None:
            self.show_ack_for(policy)

    def show_ack_for(self, policy: Policy) -> None:
        """AckFlow's ``show_dialog`` hook: open the dialog for this policy."""
        from agent.ui.ack import show_ack_dialog

        ui = self._tk()
        if ui is not None:
            previous = self.previous_ack(policy.id) if self.previous_ack else None
            ui.call(lambda root: show_ack_dialog(root, self._t, policy, self.acknowledge, previous=previous))


def with_policy_title(status: Mapping[str, Any], policy: Policy | None, language: str) -> Mapping[str, Any]:
    policy_status = status.get("policy")
    if isinstance(policy_status, Mapping) and policy is not None and policy_status.get("id") == policy.id:
        from agent.ui.ack import policy_title

        return {**status, "policy": {**policy_status, "title": policy_title(policy, language)}}
    return status


def backend_title(backend: str | None, view: StatusView) -> str:
    """The tooltip as the backend can carry it.

    pystray's X11 backend writes the title as WM_NAME of type STRING (Latin-1) and raises on anything else,
    so a Japanese tooltip crashed the tray at start. There the title is ASCII and the worker's text goes
    into _NET_WM_NAME (UTF-8, EWMH), which is what panels and xdotool read first.
    """
    if backend != "xorg":
        return view.tooltip
    try:
        view.tooltip.encode("latin-1")
    except UnicodeEncodeError:
        return f"Mamori: {view.state.value}"
    return view.tooltip


def _set_net_wm_name(icon: Any, text: str) -> None:
    window = getattr(icon, "_window", None)
    display = getattr(icon, "_display", None)
    if window is None or display is None:
        return
    window.change_property(
        display.intern_atom("_NET_WM_NAME"), display.intern_atom("UTF8_STRING"), 8, text.encode("utf-8")
    )


def _enable_xorg_clicks(icon: Any) -> None:
    """Make pystray's X11 icon window receive real clicks.

    pystray 0.19.5 creates the icon window with only Exposure|StructureNotify in its event mask, so the X
    server never delivers ButtonPress to it and its "click activates the default item" never fires on a real
    desktop. Adding ButtonPressMask on the same window (pystray's own dispatcher already handles the event)
    is the smallest fix; without it the menu-less tray would have no way to open the status window.
    """
    window = getattr(icon, "_window", None)
    display = getattr(icon, "_display", None)
    if window is None or display is None:
        logger.warning("cannot enable clicks on the X11 tray icon: pystray internals changed")
        return
    from Xlib import X

    mask = X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask
    # Enter/leave: pystray's X11 backend has no tooltip; the pump shows ours (XorgPopups.show_tooltip).
    window.change_attributes(event_mask=mask | X.EnterWindowMask | X.LeaveWindowMask)
    display.flush()


REPAINT_AFTER_EMBED = 15.0  # seconds of once-a-second repaints after the icon is (re-)embedded


class XorgPopups:
    """The tooltip and the menu of the X11 tray without AppIndicator (pystray's xorg backend has neither):
    Tk windows on the tray's Tk thread, fed by the X event pump's hover and right-click."""

    def __init__(self, tray: Tray) -> None:
        self.tray = tray

    TOOLTIP_DELAY_MS = 400
    TOOLTIP_HIDE_MS = 8000

    def hover(self, inside: bool) -> None:
        if inside:
            self.show_tooltip()
        else:
            self.hide_tooltip()

    def show_tooltip(self) -> None:
        """The state and the status lines next to the pointer (pystray's X11 backend has no tooltip)."""
        ui = self.tray._tk()
        if ui is None:
            return
        view = self.tray.view()
        text = "\n".join([view.tooltip, *view.lines])

        def show(root: Any) -> None:
            from agent.ui.statuswindow import show_tooltip_window

            ui.objects["tooltip_job"] = root.after(
                self.TOOLTIP_DELAY_MS, lambda: show_tooltip_window(root, text, self.TOOLTIP_HIDE_MS)
            )

        ui.call(show)

    def hide_tooltip(self) -> None:
        ui = self.tray._tk()
        if ui is None:
            return

        def hide(root: Any) -> None:
            job = ui.objects.pop("tooltip_job", None)
            if job is not None:
                root.after_cancel(job)
            tip = root.children.get("tooltip")
            if tip is not None:
                tip.destroy()

        ui.call(hide)

    def show_menu(self, x: int, y: int) -> None:
        """The tray menu as a Tk popup at (x, y): the same entries as the AppIndicator menu."""
        ui = self.tray._tk()
        if ui is None:
            return
        self.hide_tooltip()
        view = self.tray.view()
        t = self.tray._t
        entries: list[tuple[str, Callable[[], None] | None]] = [
            (t("tray.menu.open_status"), self.tray.show_status),
            (t(f"tray.state.{view.state.value}"), None),
            *((line, None) for line in view.lines),
            ("-", None),
            (t("tray.menu.step_away"), self.tray.step_away),
            (t("tray.menu.reported"), self.tray.show_reported),
            (t("tray.menu.view_policy"), self.tray.show_policy),
        ]
        if view.policy_id is not None:
            entries.append((t("tray.menu.acknowledge"), self.tray.show_ack))
        if view.paused:
            entries.append((t("tray.menu.resume"), self.tray.resume))
        elif view.permissions.allow_pause:
            entries.append((t("tray.menu.pause"), self.tray.ask_pause))
        if view.permissions.allow_quit:
            entries += [("-", None), (t("tray.menu.quit"), self.tray.quit)]

        def popup(root: Any) -> None:
            from agent.ui.statuswindow import show_popup_menu

            show_popup_menu(root, entries, x, y)

        ui.call(popup)


class _XorgPump:
    """Runs every X11 tray update on pystray's main-loop thread, with no cross-thread Xlib use.

    pystray's X11 backend updates the icon from another thread by sending itself a ClientMessage over the
    Xlib connection its main loop is blocked reading, then waits for the result with no timeout, and draws
    without flushing. With python-xlib 0.33 this loses updates under load: the icon froze in one state or
    kept a stale tooltip in tests/agent/ui/test_tray_desktop.py. This pump replaces the backend's event generator:
    it runs queued jobs on the main-loop thread (where pystray calls the implementation directly), flushes,
    and waits on the connection's socket with a short timeout so queued jobs are never stranded.
    """

    WAIT = 5.0  # a safety net only: post() wakes the loop through a pipe (no 10 Hz polling while idle)

    def __init__(self, icon: Any) -> None:
        self._icon = icon
        # Set by the Tray: pointer over the icon (True) or gone (False); a right click (x, y on the screen).
        self.on_hover: Callable[[bool], None] | None = None
        self.on_menu: Callable[[int, int], None] | None = None
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue()
        self._last_check = time.monotonic()
        self._embedded_in: int | None = None  # the tray window our icon window is embedded in
        self._embedded_at = 0.0
        self._wake_r, self._wake_w = os.pipe()
        if sys.platform != "win32":  # always true (an X11 pump); os.set_blocking is POSIX-only before 3.12
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)

    @classmethod
    def install(cls, icon: Any) -> _XorgPump | None:
        if not callable(getattr(icon, "_events", None)) or getattr(icon, "_display", None) is None:
            logger.warning("cannot install the X11 tray pump: pystray internals changed")
            return None
        pump = cls(icon)
        icon._events = pump.events
        return pump

    def post(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)
        with contextlib.suppress(BlockingIOError, OSError):  # a full pipe already wakes the loop
            os.write(self._wake_w, b"\0")

    def set_image(self, image: Any) -> None:
        """Draw a new icon image without pystray's ``_update_icon``, which re-sends a dock request on every
        update: the tray manager then re-embeds the window, and a redraw racing the re-embedding left the icon
        blank or stale (seen in tests/agent/ui/test_tray_desktop.py)."""
        icon = self._icon
        icon._icon = image
        icon._icon_data = None  # pystray's cache of the image scaled to the window
        icon._draw()
        icon._icon_valid = True

    def ensure_docked(self) -> None:
        """Dock (again) when the icon is not embedded in a tray: the icon must never go missing.

        pystray sends one dock request when shown and one when the tray manager is destroyed, and gives up if
        nobody owns the tray selection at that instant or the manager drops the request (seen with trayer
        right after it starts, and after panel restarts). Runs on the loop thread, at most once a second.
        """
        now = time.monotonic()
        if now - self._last_check < 1.0:
            return
        self._last_check = now
        icon = self._icon
        try:
            parent = icon._window.query_tree().parent
            root = icon._display.screen().root
        except Exception as err:  # the window is gone: the icon is stopping
            logger.debug("tray window gone: %s", err)
            return
        if icon._systray_manager is not None and parent.id != root.id:
            # Embedded. Repaint once a second for a while after each (re-)embedding, in case an Expose was lost
            # meanwhile; after that the tray's Expose events suffice (no X traffic while idle).
            if parent.id != self._embedded_in:
                self._embedded_in, self._embedded_at = parent.id, now
            if now - self._embedded_at < REPAINT_AFTER_EMBED:
                icon._draw()
            return
        self._embedded_in = None
        try:
            icon._assert_docked()
        except AssertionError:
            logger.debug("no tray manager yet")
            return  # try again on a later refresh
        logger.info("tray icon dock requested again")
        icon._update_icon()

    def _intercepted(self, event: Any) -> bool:
        """Hover and right click on the icon are ours (tooltip, menu); everything else goes to pystray."""
        from Xlib import X

        window = getattr(self._icon, "_window", None)
        if window is None or getattr(getattr(event, "window", None), "id", None) != window.id:
            return False
        if event.type in (X.EnterNotify, X.LeaveNotify) and self.on_hover is not None:
            self.on_hover(event.type == X.EnterNotify)
            return True
        if event.type == X.ButtonPress and event.detail == 3 and self.on_menu is not None:
            self.on_menu(int(event.root_x), int(event.root_y))
            return True
        if event.type == X.ButtonPress and self.on_hover is not None:
            self.on_hover(False)  # a left click opens the status window: the tooltip goes
        return False

    def events(self) -> Iterator[Any]:
        import select

        display = self._icon._display
        while True:
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                try:
                    job()
                except Exception:
                    logger.exception("tray update failed")
            display.flush()
            while display.pending_events():
                event = display.next_event()
                if self._intercepted(event):
                    continue
                yield event
            readable, _, _ = select.select([display, self._wake_r], [], [], self.WAIT)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)


# The data fields that say why an event was sent, in the order they are shown (rule names, check ids, codes:
# never titles, which the privacy filter keeps off the wire anyway).
_WHY_FIELDS = (
    "reason",
    "reason_code",
    "check_id",
    "status",
    "mode",
    "stage",
    "rules",
    "count",
    "app",
    "capability",
    "method",
    "interface",
    "policy_id",
    "version",
    "state",
    "failing",
    "minutes",
)


def reported_rows(t: Translate, records: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(local time, what, why) for each record as sent, newest first."""
    from datetime import UTC, datetime

    rows: list[tuple[float, tuple[str, str, str]]] = []
    for record in records:
        ms = record.get("time")
        stamp = float(ms) / 1000 if isinstance(ms, int | float) else 0.0
        when = datetime.fromtimestamp(stamp, UTC).astimezone().strftime("%m-%d %H:%M:%S") if stamp else "?"
        code = str(_mapping(record.get("metadata")).get("event_code", "?"))
        try:
            what = t(f"reported.kind.{code}")
        except KeyError:
            what = code
        data = _mapping(record.get("unmapped"))
        parts = []
        for key in _WHY_FIELDS:
            value = data.get(key)
            if value in (None, "", [], {}):
                continue
            if isinstance(value, list | tuple):
                value = ", ".join(str(v) for v in value)
            parts.append(f"{key}={value}")
        rows.append((stamp, (when, what, "  ".join(parts))))
    rows.sort(key=lambda row: row[0], reverse=True)
    return [row for _, row in rows]


def reported_text(t: Translate, records: Sequence[Mapping[str, Any]]) -> str:
    """The last events as a table (time, what, details), newest first, under the privacy promise."""
    head = t("status.reported.privacy")
    if not records:
        return f"{head}\n\n{t('status.reported.none')}\n"
    rows = reported_rows(t, records)
    header = (t("reported.column.time"), t("reported.column.what"), t("reported.column.why"))
    width = max(_cells(header[1]), *(_cells(what) for _, what, _ in rows))
    lines = [_row(header, width), _row(("-" * 14, "-" * width, "-" * 20), width)]
    lines += [_row(row, width) for row in rows]
    return f"{head}\n\n" + "\n".join(lines) + "\n"


def reported_json(records: Sequence[Mapping[str, Any]]) -> str:
    """The same events exactly as sent: one JSON document a line, newest first."""

    def when(record: Mapping[str, Any]) -> float:
        value = record.get("time")
        return float(value) if isinstance(value, int | float) else 0.0

    ordered = sorted(records, key=when)
    return "\n".join(json.dumps(r, ensure_ascii=False, sort_keys=True) for r in reversed(ordered)) + "\n"


def _cells(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _row(row: tuple[str, str, str], width: int) -> str:
    when, what, why = row
    return f"{when:<14}  {what}{' ' * (width - _cells(what))}  {why}".rstrip()


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def policy_text(t: Translate, policy: Policy | None) -> str:
    from agent.ui.ack import policy_summary, policy_title

    if policy is None:
        return t("status.policy_none") + "\n"
    title = policy_title(policy, str(getattr(t, "language", "en")))
    lines = [t("status.policy", id=title, version=policy.version), ""]
    lang = getattr(t, "language", "en")
    ack_text = policy.acknowledgement.text.get(lang)
    if ack_text:
        lines += [ack_text, ""]
    lines += ["• " + line for line in policy_summary(t, policy)]
    return "\n".join(lines) + "\n"
