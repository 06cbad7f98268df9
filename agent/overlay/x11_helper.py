"""The cover helper on X11, drawn straight through Xlib (``python -m agent.overlay.helper`` picks it on Linux).

The same covers as the Tk helper (helper.py), without Tk: an idle helper is the interpreter, python-xlib and the
protocol (about 17 MB resident where Tk needs 23 MB; docs/performance.md), and it sleeps in ``select`` with no
timer at all until the agent writes or the X server sends an event.

Each cover is an override-redirect window exactly over the customer window, its picture a server-side pixmap
set as the window's background, so the X server repaints it by itself:
- ``opaque``: the dark panel with the short ja/en label;
- ``blur``: the area read from the root window *before* the cover maps, reduced 24x and smoothed with Pillow so
  no character survives, kept only in memory, with the label on a panel on top.
Labels are drawn with Pillow in a TrueType font that has Japanese (fontconfig's choice for ``:lang=ja``, else a
known Debian path); with none, the label falls back to Pillow's own font and the helper says so once — the panel
covers either way. While covers are up and the agent has not said ``on_top: false`` (the lock stage), they are
raised every 250 ms, because a newly raised managed window may stack above them; the countdown too.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import time
from typing import Any

import Xlib.ext
from Xlib import X
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.protocol import request as xrequest

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
from agent.overlay.protocol import CoverSpec

LABEL_PX = 20  # the Tk helper's 13 pt bold, as Tk draws it on X11
BOLD_STROKE = 0.4  # pixels
COUNTDOWN_PX = 16
LABEL_PAD = (10, 6)  # the panel around a label on a blurred picture
COUNTDOWN_PAD = (16, 10)
COUNTDOWN_TOP = 40
# Fonts with Japanese on Debian and Ubuntu, tried in order when fontconfig is absent or finds none.
FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
    "/usr/share/fonts/truetype/vlgothic/VL-Gothic-Regular.ttf",
    "/usr/share/fonts/truetype/takao-gothic/TakaoGothic.ttf",
)


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def japanese_font_file() -> str | None:
    """A TrueType/OpenType font file that has Japanese, or None."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        # fontconfig answers its best match even when nothing has Japanese: its languages say whether it does.
        found, _, langs = subprocess.run(
            ["fc-match", "--format=%{file}\\n%{lang}", "sans-serif:lang=ja:weight=bold"],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        ).stdout.partition("\n")
        if found and os.path.isfile(found) and "ja" in re.split(r"[|,]", langs):
            return found
    return next((p for p in FONT_PATHS if os.path.isfile(p)), None)


def wrap(text: str, width_of: Any, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width``: at a space when there is one, else anywhere
    (Japanese has no spaces between words)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        current = ""
        for ch in paragraph:
            trial = current + ch
            if current and width_of(trial) > width:
                cut = current.rfind(" ")
                if cut > 0:
                    lines.append(current[:cut])
                    current = current[cut + 1 :] + ch
                else:
                    lines.append(current)
                    current = ch.lstrip()
            else:
                current = trial
        lines.append(current)
    return lines


class X11Cover:
    def __init__(self, helper: X11Helper, spec: CoverSpec) -> None:
        self.helper = helper
        self.spec = spec
        self.small: Any = None
        self.pixmap: Any = None
        if spec.style == "blur":
            try:
                self.small = helper.snapshot(spec.rect.x, spec.rect.y, spec.rect.width, spec.rect.height)
            except Exception as err:  # no snapshot: fall back to the opaque panel, never to nothing
                emit({"event": "error", "message": f"blur snapshot failed: {type(err).__name__}"})
        r = spec.rect
        self.window = helper.new_window(r.x, r.y, r.width, r.height, X.ButtonPressMask)
        self._render()
        self.window.map()

    def apply(self, spec: CoverSpec) -> None:
        old, self.spec = self.spec, spec
        r = spec.rect
        if (old.rect.width, old.rect.height, old.label) != (r.width, r.height, spec.label):
            self._render()
        self.window.configure(x=r.x, y=r.y, width=r.width, height=r.height)
        if self.helper.on_top:
            self.lift()

    def lift(self) -> None:
        self.window.configure(stack_mode=X.Above)

    def _render(self) -> None:
        r = self.spec.rect
        image = self.helper.picture(self.small, r.width, r.height, self.spec.label)
        self.pixmap = self.helper.show_picture(self.window, image, self.pixmap)

    def destroy(self) -> None:
        self.window.destroy()
        if self.pixmap is not None:
            self.pixmap.free()


class X11Helper(HelperCore):
    def __init__(self) -> None:
        super().__init__()
        # The helper speaks the core protocol only: python-xlib would otherwise query and import every extension
        # the server offers (0.8 MB and a dozen round trips at each start). This process is the helper alone.
        Xlib.ext.__extensions__ = []
        self.display = xdisplay.Display()
        self.display.set_error_handler(self._x_error)
        self.screen = self.display.screen()
        self.root = self.screen.root
        self.depth = self.screen.root_depth
        info = self.display.display.info
        bpp = next((f.bits_per_pixel for f in info.pixmap_formats if f.depth == self.depth), 0)
        # Pictures need 32 bits a pixel (24-bit colour); elsewhere the panel colour alone covers.
        self.truecolor = self.depth in (24, 32) and bpp == 32
        self.raw_mode = "BGRX" if info.image_byte_order == X.LSBFirst else "XRGB"
        self.request_bytes = (info.max_request_length << 2) - xrequest.PutImage._request.static_size
        self.panel_pixel = self.screen.default_colormap.alloc_color(*(c * 257 for c in rgb(PANEL))).pixel
        self.countdown: Any = None
        self.countdown_pixmap: Any = None
        self._fonts: dict[int, Any] = {}
        self._font_file: str | bool | None = False  # False: not looked for yet
        self._next_raise = 0.0

    def _x_error(self, err: xerror.XError, _request: Any) -> None:
        # A window of ours destroyed under a request in flight; nothing to do but say so.
        emit({"event": "error", "message": f"X error {type(err).__name__}"})

    # -- windows and pictures ---------------------------------------------------------------------------------

    def new_window(self, x: int, y: int, width: int, height: int, events: int) -> Any:
        window = self.root.create_window(
            x,
            y,
            max(1, width),
            max(1, height),
            0,
            self.depth,
            X.InputOutput,
            X.CopyFromParent,
            override_redirect=True,
            background_pixel=self.panel_pixel,
            event_mask=events,
        )
        window.set_wm_class("mamori-cover", "MamoriCover")
        window.set_wm_name("Mamori")
        pid_atom = self.display.intern_atom("_NET_WM_PID")
        window.change_property(pid_atom, self.display.intern_atom("CARDINAL"), 32, [os.getpid()])
        return window

    def snapshot(self, x: int, y: int, width: int, height: int) -> Any:
        """The screen area (the part of it on the screen), blurred beyond recognition. Memory only."""
        from PIL import Image

        sw, sh = self.screen.width_in_pixels, self.screen.height_in_pixels
        x0, y0, x1, y1 = max(0, x), max(0, y), min(sw, x + width), min(sh, y + height)
        if x1 <= x0 or y1 <= y0:
            raise ValueError("the area is off the screen")
        if not self.truecolor:
            raise ValueError(f"a depth-{self.depth} screen")
        shot = self.root.get_image(x0, y0, x1 - x0, y1 - y0, X.ZPixmap, 0xFFFFFFFF)
        area = Image.frombytes("RGB", (x1 - x0, y1 - y0), shot.data, "raw", self.raw_mode)
        canvas = Image.new("RGB", (max(1, width), max(1, height)), rgb(PANEL))
        canvas.paste(area, (x0 - x, y0 - y))
        return reduce_snapshot(canvas)

    def font(self, px: int) -> Any:
        from PIL import ImageFont

        if px not in self._fonts:
            if self._font_file is False:
                self._font_file = japanese_font_file()
                if self._font_file is None:
                    emit(
                        {"event": "error", "message": "no font with Japanese found: labels drawn without it"}
                    )
            if isinstance(self._font_file, str):
                self._fonts[px] = ImageFont.truetype(self._font_file, px)
            else:
                self._fonts[px] = ImageFont.load_default(px)
        return self._fonts[px]

    def picture(self, small: Any, width: int, height: int, label: str) -> Any:
        """The cover's picture: the blurred snapshot scaled to the cover (or the panel), the label centred."""
        from PIL import Image, ImageDraw

        size = (max(1, width), max(1, height))
        if small is not None:
            image = small.resize(size, Image.Resampling.BILINEAR)
        else:
            image = Image.new("RGB", size, rgb(PANEL))
        if label:
            font = self.font(LABEL_PX)
            # The label is bold: a face without a bold weight gets a thin stroke, as Xft emboldens one.
            bold = (
                0.0 if "bold" in str(getattr(font, "getname", lambda: ("", ""))()[1]).lower() else BOLD_STROKE
            )
            draw = ImageDraw.Draw(image)
            text = "\n".join(wrap(label, font.getlength, max(120, width - 40)))
            left, top, right, bottom = (
                round(v) for v in draw.multiline_textbbox((0, 0), text, font=font, align="center")
            )
            tx = (size[0] - (right - left)) // 2 - left
            ty = (size[1] - (bottom - top)) // 2 - top
            if small is not None:
                px, py = LABEL_PAD
                draw.rectangle(
                    (tx + left - px, ty + top - py, tx + right + px, ty + bottom + py), fill=rgb(PANEL)
                )
            draw.multiline_text(
                (tx, ty),
                text,
                font=font,
                fill=rgb(TEXT),
                align="center",
                stroke_width=bold,
                stroke_fill=rgb(TEXT),
            )
        return image

    def show_picture(self, window: Any, image: Any, old: Any) -> Any:
        """Put ``image`` into a new pixmap, make it ``window``'s background (the server repaints it from there
        on its own), free the ``old`` pixmap. The picture stays the panel colour where it cannot be drawn."""
        width, height = image.size
        if not self.truecolor:
            return old  # the panel colour (background_pixel) alone still covers
        pixmap = window.create_pixmap(width, height, self.depth)
        gc = pixmap.create_gc()
        data = image.tobytes("raw", self.raw_mode)
        stride = width * 4
        rows = max(1, self.request_bytes // stride)
        for y in range(0, height, rows):
            n = min(rows, height - y)
            pixmap.put_image(
                gc, 0, y, width, n, X.ZPixmap, self.depth, 0, data[y * stride : (y + n) * stride]
            )
        gc.free()
        window.change_attributes(background_pixmap=pixmap)
        window.clear_area()
        if old is not None:
            old.free()
        return pixmap

    # -- the countdown ----------------------------------------------------------------------------------------

    def set_countdown(self, seconds: Any, text: str) -> None:
        from PIL import Image, ImageDraw

        if seconds is None:
            if self.countdown is not None:
                self.countdown.destroy()
                self.countdown_pixmap.free()
                self.countdown = self.countdown_pixmap = None
                self.display.flush()
            return
        font = self.font(COUNTDOWN_PX)
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        left, top, right, bottom = (round(v) for v in probe.multiline_textbbox((0, 0), text, font=font))
        px, py = COUNTDOWN_PAD
        width, height = right - left + 2 * px, bottom - top + 2 * py
        image = Image.new("RGB", (width, height), rgb(COUNTDOWN_PANEL))
        ImageDraw.Draw(image).multiline_text((px - left, py - top), text, font=font, fill=rgb(COUNTDOWN_TEXT))
        x = max(0, (self.screen.width_in_pixels - width) // 2)
        if self.countdown is None:
            self.countdown = self.new_window(x, COUNTDOWN_TOP, width, height, 0)
            self.countdown_pixmap = self.show_picture(self.countdown, image, None)
            self.countdown.map()
        else:
            self.countdown.configure(x=x, y=COUNTDOWN_TOP, width=width, height=height)
            self.countdown_pixmap = self.show_picture(self.countdown, image, self.countdown_pixmap)
        self.countdown.configure(stack_mode=X.Above)
        self.display.flush()

    # -- the loop ---------------------------------------------------------------------------------------------

    def new_cover(self, spec: CoverSpec) -> X11Cover:
        return X11Cover(self, spec)

    def flush(self) -> None:
        self.display.sync()

    def keep_on_top(self) -> None:
        # Not in the lock stage: a screen locker maps its window above the covers and must stay there.
        for cover in self.covers.values() if self.on_top else ():
            cover.lift()
        if self.countdown is not None:
            self.countdown.configure(stack_mode=X.Above)
        self.display.flush()

    def _raising(self) -> bool:
        return bool(self.covers and self.on_top) or self.countdown is not None

    def _x_events(self) -> None:
        while self.display.pending_events():
            event = self.display.next_event()
            if event.type == X.ButtonPress:
                for cover in self.covers.values():
                    if cover.window.id == event.window.id and cover.spec.clickable:  # type: ignore[attr-defined]
                        emit({"event": "clicked", "key": cover.spec.key})

    def run(self) -> None:
        stdin = sys.stdin.fileno()
        xfd = self.display.fileno()
        emit({"event": "ready", "pid": os.getpid()})
        while True:
            self._x_events()
            wait = None
            if self._raising():
                wait = max(0.0, self._next_raise - time.monotonic())
            readable, _, _ = select.select([stdin, xfd], [], [], wait)
            if stdin in readable:
                chunk = os.read(stdin, 65536)
                if not chunk:
                    return
                for message in self.parse(chunk):
                    if not self.dispatch(message):
                        return
            if self._raising() and time.monotonic() >= self._next_raise:
                self.keep_on_top()
                self._next_raise = time.monotonic() + RAISE_MS / 1000
