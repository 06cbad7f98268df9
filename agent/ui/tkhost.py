"""One thread that owns Tk for the agent's dialogs (status window, acknowledgement, pause, text viewers).

pystray owns the main thread (it must on macOS), so Tk lives on its own thread and every Tk call happens
there: other threads hand it work with :meth:`TkHost.call`, a queue drained by a Tk ``after`` timer. Tk is
not thread-safe, and this queue is the only way in.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from core.errors import MamoriError

if TYPE_CHECKING:
    import tkinter as tk

logger = logging.getLogger(__name__)

POLL_MS = 50
# While nothing is asked of Tk the poll backs off to this (idle CPU budget, SPEC.md "Performance targets"): a Tk
# thread started by one dialog then wakes 4 times a second instead of 20, and a new job waits at most this long.
IDLE_POLL_MS = 250


class TkUnavailableError(MamoriError):
    """Tk cannot start (no display, or Tk not installed)."""


class TkHost:
    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[tk.Tk], object] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_lock = threading.Lock()
        self._delay = POLL_MS
        self._error: BaseException | None = None
        self.root: tk.Tk | None = None
        #: Long-lived Tk objects (e.g. the status window). Cleared on the Tk thread at shutdown: a Tk object
        #: garbage-collected on another thread aborts the process ("Tcl_AsyncDelete: ... wrong thread").
        self.objects: dict[str, object] = {}

    def start(self, timeout: float = 10.0) -> TkHost:
        """Start the Tk thread; raises TkUnavailableError when Tk cannot open the display."""
        # One Tk thread, however many callers ask at once (the tray menu and the acknowledgement watcher can):
        # two Tk interpreters in one process abort it. Every caller then waits for the same start, and a Tk
        # that could not start once fails every later call too instead of queueing work for no thread.
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mamori-tk", daemon=True)
                self._thread.start()
        if not self._ready.wait(timeout):
            raise TkUnavailableError("Tk did not start in time; is the display responding?")
        if self._error is not None:
            raise TkUnavailableError(
                f"cannot open Tk windows ({self._error}); run in the desktop session with Tk installed"
            ) from self._error
        return self

    def _run(self) -> None:
        try:
            import tkinter as tk

            root = tk.Tk(className="Mamori")
            root.withdraw()
        except Exception as err:  # tkinter raises TclError or ImportError; report either once
            self._error = err
            self._ready.set()
            return
        self.root = root
        self._ready.set()
        root.after(POLL_MS, self._drain)
        try:
            root.mainloop()
        finally:
            self.root = None
            self.objects.clear()
            try:
                root.destroy()
            except Exception:  # already destroyed
                logger.debug("Tk root already gone")
            del root
            gc.collect()  # free every Tk object here, on the thread that owns the interpreter

    def _drain(self) -> None:
        root = self.root
        if root is None:
            return
        ran = False
        while True:
            try:
                fn = self._queue.get_nowait()
            except queue.Empty:
                break
            if fn is None:
                root.quit()
                return
            ran = True
            try:
                fn(root)
            except Exception:
                # A broken dialog must not take down the UI thread (and with it the tray's fallback window).
                logger.exception("UI action failed")
        self._delay = POLL_MS if ran else min(IDLE_POLL_MS, self._delay * 2)
        root.after(self._delay, self._drain)

    def call(self, fn: Callable[[tk.Tk], object]) -> None:
        """Run ``fn(root)`` on the Tk thread (from any thread)."""
        self._queue.put(fn)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None
