"""The X11 clipboard (python-xlib): who owns CLIPBOARD and PRIMARY, and taking them over with a notice.

- Owners are followed with XFIXES selection events (``XFixesSelectSelectionInput``: set-owner, window destroyed,
  client closed), so looking at them costs no round trip. The owner window's process comes from
  ``_NET_WM_PID`` on it, else the X server's record of the client that created it (X-Resource 1.2
  ``QueryClientIds``); its top-level windows are the client-list windows created by the same X connection (the
  same resource-id base), which is how a title rule applies to a selection whose owner is an unmapped helper
  window (Tk, GTK and Qt all own selections with hidden windows).
- Taking over: the agent's own unmapped window becomes the owner (``SetSelectionOwner``) and answers each
  ``SelectionRequest`` itself (ICCCM section 2): ``TARGETS``, ``TIMESTAMP``, and the notice as
  ``UTF8_STRING``, ``text/plain;charset=utf-8``, ``TEXT`` or ``STRING`` (Latin-1 only: the English line); any other
  target is refused. In "clear" mode only ``TARGETS`` and ``TIMESTAMP`` are answered: the selection is empty.
  Owning it, rather than setting the owner to None, matters: clipboard managers treat an ownerless clipboard as
  lost and put their saved copy back.

One thread owns the X connection (python-xlib is not thread-safe): it answers requests, follows owners and runs
the guard's take-overs, which reach it through a queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
from dataclasses import replace
from typing import Any

from agent.clipboard.base import CLIPBOARD, PRIMARY, ClipboardError, Owner, Selection
from agent.platform.base import PlatformError

logger = logging.getLogger(__name__)

TEXT_TARGETS = ("UTF8_STRING", "text/plain;charset=utf-8", "TEXT", "STRING")


class X11Clipboard:
    name = "x11"
    selections: tuple[Selection, ...] = (CLIPBOARD, PRIMARY)
    # Owners and their previous owners come from XFIXES events, not from looking; the guard still wakes once a
    # second to notice the agent stopping (the runtime joins each worker for 3 s).
    idle_poll = 1.0

    def __init__(self, display: str | None = None) -> None:
        from agent.platform.x11_display import XDisplay

        try:
            self._x = XDisplay(display)
        except PlatformError as err:
            raise ClipboardError(f"clipboard guard: {err}") from err
        x = self._x
        d = x.d
        if not x.has_extension("XFIXES"):
            x.close()
            raise ClipboardError("the X server has no XFIXES extension: clipboard owners cannot be followed")
        from Xlib.ext import xfixes

        self._xfixes = xfixes
        d.xfixes_query_version()
        X = x.X
        self._win = x.root.create_window(
            -10,
            -10,
            1,
            1,
            0,
            X.CopyFromParent,
            X.InputOnly,
            X.CopyFromParent,
            event_mask=X.PropertyChangeMask,
        )
        self._win.set_wm_name("mamori-clipboard")
        self._win.change_property(x.atom("_NET_WM_PID"), x.Xatom.CARDINAL, 32, [os.getpid()])
        self._atoms: dict[Selection, int] = {CLIPBOARD: x.atom("CLIPBOARD"), PRIMARY: int(x.Xatom.PRIMARY)}
        self._by_atom = {a: s for s, a in self._atoms.items()}
        self._mask = int(d.display.info.resource_id_mask)
        mask = (
            xfixes.XFixesSetSelectionOwnerNotifyMask
            | xfixes.XFixesSelectionWindowDestroyNotifyMask
            | xfixes.XFixesSelectionClientCloseNotifyMask
        )
        self._lock = threading.Lock()
        self._serial = 0
        self._owners: dict[Selection, Owner] = {}
        self._content: dict[Selection, str | None] = {}  # what the agent serves for the selections it owns
        self._last_app: dict[Selection, Owner] = {}  # the last owner that was an app (not empty, not ours)
        for selection, atom in self._atoms.items():
            d.xfixes_select_selection_input(x.root, atom, mask)
            owner = d.get_selection_owner(atom)
            self._set_owner(selection, int(owner.id) if owner else 0)
        d.flush()
        self._commands: queue.Queue[tuple[Selection, str | None, threading.Event, list[str]]] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mamori-clipboard-x11", daemon=True)
        self._thread.start()

    # ---- the guard's side ------------------------------------------------------------------------------
    def owners(self) -> list[Owner]:
        if not self._thread.is_alive():
            raise ClipboardError("the X clipboard connection was lost")
        with self._lock:
            return [self._owners[s] for s in self.selections]

    def take(self, selection: Selection, notice: str | None) -> None:
        done = threading.Event()
        errors: list[str] = []
        self._commands.put((selection, notice, done, errors))
        os.write(self._wake_w, b"x")
        if not done.wait(2.0):
            raise ClipboardError(f"taking the {selection} selection timed out", selection)
        if errors:
            raise ClipboardError(errors[0], selection)

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(3.0)
        self._x.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ---- the X thread ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        d = self._x.d
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select([d.fileno(), self._wake_r], [], [])  # close() writes the pipe
                if self._wake_r in readable:
                    os.read(self._wake_r, 512)
                self._run_commands()
                while d.pending_events():
                    event = d.next_event()
                    try:
                        self._handle(event)
                    except self._x.errors:
                        continue  # a window that vanished while being answered or identified
        except self._x.errors as err:
            logger.warning("clipboard guard: X connection lost: %s", type(err).__name__)
        except OSError as err:
            if not self._closed.is_set():
                logger.warning("clipboard guard: X connection failed: %s", err)

    def _run_commands(self) -> None:
        while True:
            try:
                selection, notice, done, errors = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._own(selection, notice)
            except ClipboardError as err:
                errors.append(str(err))
            except self._x.errors as err:
                errors.append(f"cannot own the {selection} selection: {err}")
            finally:
                done.set()

    def _own(self, selection: Selection, notice: str | None) -> None:
        d, X = self._x.d, self._x.X
        atom = self._atoms[selection]
        # ICCCM asks for a real timestamp; CurrentTime is taken by the server as its own "now", which is what a
        # take-over needs, and the timestamp served for TIMESTAMP is read back from the server's reply below.
        self._win.set_selection_owner(atom, X.CurrentTime)
        owner = d.get_selection_owner(atom)
        if not owner or int(owner.id) != int(self._win.id):
            raise ClipboardError("another client owns it again", selection)
        with self._lock:
            self._content[selection] = notice
        self._set_owner(selection, int(self._win.id))

    def _set_owner(self, selection: Selection, owner: int) -> None:
        identity = self._identify(owner)
        with self._lock:
            self._serial += 1
            if owner != int(self._win.id):
                self._content.pop(selection, None)
            current = Owner(selection, self._serial, **identity)
            last = self._last_app.get(selection)
            if current.empty or current.ours:
                self._owners[selection] = current
                return
            # Who had it before (an app that exited hands its content to a clipboard manager, which re-owns it).
            if last is not None and (last.pid, last.window_ids) != (current.pid, current.window_ids):
                current = replace(current, previous=replace(last, previous=None))
            elif last is not None:
                # The same app owns it again (a manager re-owning): keep where the content came from.
                current = replace(current, previous=last.previous)
            self._owners[selection] = current
            self._last_app[selection] = current

    def _identify(self, owner: int) -> dict[str, Any]:
        if not owner:
            return {}
        if owner == int(self._win.id):
            return {"pid": os.getpid(), "ours": True}
        x = self._x
        pid: int | None = None
        windows: frozenset[int] = frozenset()
        try:
            win = x.d.create_resource_object("window", owner)
            value = x.prop(win, "_NET_WM_PID", x.Xatom.CARDINAL)
            if value is not None and len(value) and int(value[0]) > 0:
                pid = int(value[0])
            elif x.has_xres:
                from Xlib.ext import res

                reply = x.d.res_query_client_ids([{"client": owner, "mask": res.LocalClientPIDMask}])
                for item in reply.ids:
                    if item.spec.mask & res.LocalClientPIDMask and len(item.value):
                        pid = int(item.value[0])
            clients = x.prop(x.root, "_NET_CLIENT_LIST")
            base = owner & ~self._mask
            if clients is not None:
                windows = frozenset(int(c) for c in clients if int(c) & ~self._mask == base)
        except x.errors:
            pass  # the owner vanished meanwhile: an XFIXES event follows
        return {"pid": pid, "process_name": _process_name(pid), "window_ids": windows}

    def _handle(self, event: Any) -> None:
        X = self._x.X
        if isinstance(event, self._xfixes.SelectionNotify):
            selection = self._by_atom.get(_xid(event.selection))
            if selection is not None:
                # python-xlib parses every XFIXES selection event as the base class; the sub-code says which.
                gone = int(event.sub_code) != self._xfixes.XFixesSetSelectionOwnerNotify
                self._set_owner(selection, 0 if gone else _xid(event.owner))
        elif event.type == X.SelectionRequest:
            self._answer(event)
        elif event.type == X.SelectionClear:
            selection = self._by_atom.get(_xid(event.atom))
            if selection is not None:
                with self._lock:
                    self._content.pop(selection, None)

    def _answer(self, event: Any) -> None:
        """Answer one SelectionRequest (ICCCM 2.2): write the property on the requestor, then notify it."""
        from Xlib.protocol import event as xevent

        x = self._x
        X = x.X
        selection = self._by_atom.get(_xid(event.selection))
        prop = _xid(event.property) or _xid(event.target)  # obsolete clients send None (ICCCM 2.2)
        target = _xid(event.target)
        with self._lock:
            owned = selection is not None and selection in self._content
            notice = self._content.get(selection) if selection is not None else None
        answered = X.NONE
        try:
            requestor = x.d.create_resource_object("window", _xid(event.requestor))
            if owned:
                names = ["TARGETS", "TIMESTAMP", *(TEXT_TARGETS if notice is not None else ())]
                if target == x.atom("TARGETS"):
                    requestor.change_property(prop, x.Xatom.ATOM, 32, [x.atom(n) for n in names])
                    answered = prop
                elif target == x.atom("TIMESTAMP"):
                    requestor.change_property(prop, x.Xatom.INTEGER, 32, [int(event.time) & 0xFFFFFFFF])
                    answered = prop
                elif notice is not None and target in [x.atom(n) for n in TEXT_TARGETS]:
                    if target == x.atom("STRING"):
                        lines = notice.splitlines()
                        line = next((t for t in lines if t.isascii()), lines[-1] if lines else "")
                        data = line.encode("latin-1", errors="replace")
                        kind = x.Xatom.STRING
                    else:
                        data = notice.encode("utf-8")
                        kind = target if target != x.atom("TEXT") else x.atom("UTF8_STRING")
                    requestor.change_property(prop, kind, 8, data)
                    answered = prop
            reply = xevent.SelectionNotify(
                time=event.time,
                requestor=requestor,
                selection=event.selection,
                target=event.target,
                property=answered,
            )
            requestor.send_event(reply, event_mask=0)
            x.d.flush()
        except x.errors:
            pass  # the requestor went away


def _xid(value: Any) -> int:
    """An event field as a number: python-xlib gives windows as resource objects, atoms and None as ints."""
    return int(getattr(value, "id", value) or 0)


def _process_name(pid: int | None) -> str:
    if not pid:
        return ""
    import psutil

    try:
        return str(psutil.Process(pid).name())
    except (psutil.Error, OSError):
        return ""
