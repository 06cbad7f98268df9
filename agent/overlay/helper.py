"""The cover helper process: ``python -m agent.overlay.helper``. Draws what the agent asks (protocol.py).

A separate process so that a crash in the drawing code, the X connection or Pillow cannot take the agent down
(SPEC.md, "Cover"); the agent's supervisor restarts it and re-sends the covers. On Linux it draws through Xlib
(x11_helper.py, no Tk); elsewhere through Tk, below. ``MAMORI_COVER_HELPER=tk`` picks Tk on Linux too.

Each cover is a borderless (override-redirect) topmost Tk window exactly over the customer window:
- ``opaque``: a dark panel with a short ja/en label;
- ``blur``: a snapshot of the area taken with mss *before* the cover maps, reduced 24x and smoothed with
  Pillow so no character survives, kept only in memory (never written to disk), with the label on top.
A cover that moves or resizes keeps its snapshot (scaled): a new grab would capture the cover itself.
Covers are re-raised every 250 ms because a newly raised managed window may stack above them on X11, except
while the agent says ``on_top: false`` (the lock stage), so a screen locker's window stays above them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
from typing import TYPE_CHECKING, Any

from agent.overlay.core import (
    COUNTDOWN_PANEL,
    COUNTDOWN_TEXT,
    PANEL,
    RAISE_MS,
    TEXT,
    HelperCore,
    emit,
    reduce_snapshot,
)
from agent.overlay.protocol import CoverSpec, ProtocolError, loads
from agent.platform import COVER_FONT, make_process_dpi_aware

if TYPE_CHECKING:
    from agent.overlay.x11_helper import X11Helper

POLL_MS = 20


def blurred_snapshot(x: int, y: int, width: int, height: int) -> Any:
    """A PIL image of the screen area, blurred beyond recognition. Memory only."""
    import mss
    from PIL import Image

    with mss.mss() as grabber:
        shot = grabber.grab({"left": x, "top": y, "width": width, "height": height})
    return reduce_snapshot(Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX"))


class TkCover:
    def __init__(self, helper: Helper, spec: CoverSpec) -> None:
        import tkinter as tk

        self.helper = helper
        self.spec = spec
        self.small: Any = None
        self.photo: Any = None
        if spec.style == "blur":
            try:
                r = spec.rect
                self.small = blurred_snapshot(r.x, r.y, r.width, r.height)
            except Exception as err:  # no snapshot: fall back to the opaque panel, never to nothing
                emit({"event": "error", "message": f"blur snapshot failed: {type(err).__name__}"})
        top = tk.Toplevel(helper.root, background=PANEL, highlightthickness=0, borderwidth=0)
        top.overrideredirect(True)
        with contextlib.suppress(tk.TclError):
            top.attributes("-topmost", True)
        self.top = top
        self.image_label = tk.Label(top, background=PANEL, borderwidth=0, highlightthickness=0)
        self.image_label.place(x=0, y=0, relwidth=1, relheight=1)
        self.text = tk.Label(
            top,
            text=spec.label,
            background=PANEL,
            foreground=TEXT,
            font=(COVER_FONT, 13, "bold"),
            wraplength=max(120, spec.rect.width - 40),
            justify="center",
        )
        self.text.place(relx=0.5, rely=0.5, anchor="center")
        for widget in (top, self.image_label, self.text):
            widget.bind("<Button-1>", self._clicked)
        self.apply(spec, first=True)

    def _clicked(self, _event: Any) -> None:
        if self.spec.clickable:
            emit({"event": "clicked", "key": self.spec.key})

    def apply(self, spec: CoverSpec, first: bool = False) -> None:
        old = self.spec
        self.spec = spec
        r = spec.rect
        if first or (old.rect.width, old.rect.height) != (r.width, r.height):
            self._render_image()
        if first or old.label != spec.label:
            self.text.configure(text=spec.label, wraplength=max(120, r.width - 40))
        self.top.geometry(f"{r.width}x{r.height}+{r.x}+{r.y}")
        if self.helper.on_top:
            self.top.lift()

    def lift(self) -> None:
        self.top.lift()

    def _render_image(self) -> None:
        if self.small is None:
            self.image_label.configure(image="")
            return
        from PIL import Image, ImageTk

        r = self.spec.rect
        img = self.small.resize((max(1, r.width), max(1, r.height)), Image.Resampling.BILINEAR)
        self.photo = ImageTk.PhotoImage(img, master=self.top)
        self.image_label.configure(image=self.photo)

    def destroy(self) -> None:
        self.top.destroy()


class Helper(HelperCore):
    def __init__(self) -> None:
        import tkinter as tk

        super().__init__()
        self.root = tk.Tk(className="MamoriCover")
        self.root.withdraw()
        self.countdown: Any = None
        self.inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def new_cover(self, spec: CoverSpec) -> TkCover:
        return TkCover(self, spec)

    def flush(self) -> None:
        self.root.update_idletasks()
        self.root.update()

    def _on_stdin(self, _fd: Any, _mask: Any) -> None:
        """POSIX: Tk's file handler calls this when stdin is readable, so an idle helper never wakes up."""
        chunk = os.read(sys.stdin.fileno(), 65536)
        if not chunk:
            self.inbox.put(None)
        else:
            for message in self.parse(chunk):
                self.inbox.put(message)
        self._drain()

    def read_stdin(self) -> None:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                self.inbox.put(loads(line))
            except ProtocolError as err:
                emit({"event": "error", "message": str(err)})
        self.inbox.put(None)

    def poll(self) -> None:
        """Windows (no Tk file handlers): drain what the reader thread queued, every POLL_MS."""
        if self._drain():
            self.root.after(POLL_MS, self.poll)

    def _drain(self) -> bool:
        while True:
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                break
            if message is None or not self.dispatch(message):
                self.root.destroy()
                return False
        return True

    def set_countdown(self, seconds: Any, text: str) -> None:
        import tkinter as tk

        if seconds is None:
            if self.countdown is not None:
                self.countdown.destroy()
                self.countdown = None
            return
        if self.countdown is None:
            top = tk.Toplevel(self.root, background=COUNTDOWN_PANEL)
            top.overrideredirect(True)
            with contextlib.suppress(tk.TclError):
                top.attributes("-topmost", True)
            label = tk.Label(
                top,
                background=COUNTDOWN_PANEL,
                foreground=COUNTDOWN_TEXT,
                font=(COVER_FONT, 12),
                padx=16,
                pady=10,
            )
            label.pack()
            top.label = label  # type: ignore[attr-defined]
            self.countdown = top
        self.countdown.label.configure(text=text)
        self.countdown.update_idletasks()
        width = self.countdown.winfo_reqwidth()
        screen_w = self.root.winfo_screenwidth()
        self.countdown.geometry(f"+{max(0, (screen_w - width) // 2)}+40")
        self.countdown.lift()

    def keep_on_top(self) -> None:
        # Not in the lock stage: a screen locker maps its window above the covers and must stay there.
        for cover in self.covers.values() if self.on_top else ():
            cover.lift()
        if self.countdown is not None:
            self.countdown.lift()
        idle = not self.covers and self.countdown is None
        self.root.after(1000 if idle else RAISE_MS, self.keep_on_top)

    def run(self) -> None:
        createfilehandler = getattr(self.root.tk, "createfilehandler", None)
        if createfilehandler is not None and os.name == "posix":
            import tkinter

            createfilehandler(sys.stdin.fileno(), tkinter.READABLE, self._on_stdin)
        else:
            threading.Thread(target=self.read_stdin, daemon=True).start()
            self.root.after(POLL_MS, self.poll)
        self.root.after(RAISE_MS, self.keep_on_top)
        emit({"event": "ready", "pid": os.getpid()})
        self.root.mainloop()


def main() -> int:
    helper: Helper | X11Helper
    try:
        if sys.platform.startswith("linux") and os.environ.get("MAMORI_COVER_HELPER", "x11") != "tk":
            from agent.overlay.x11_helper import X11Helper

            helper = X11Helper()
        else:
            make_process_dpi_aware()  # covers in physical pixels, like the Windows backend's rectangles
            helper = Helper()
    except Exception as err:  # no display, no Tk: the agent learns covering is impossible and locks instead
        emit({"event": "error", "message": f"cannot open the cover window: {type(err).__name__}: {err}"})
        return 3
    helper.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
