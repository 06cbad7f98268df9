"""What every cover helper does the same way: read the agent's line-JSON messages (protocol.py), keep exactly the
covers the last message asks for, and answer on stdout.

Two helpers draw them: x11_helper.py straight through Xlib on X11 (no Tk: the helper stays small), helper.py
through Tk elsewhere (Windows, macOS). Each subclasses :class:`HelperCore` and supplies the drawing: a cover
object per spec, the countdown, and ``flush`` (everything asked so far is on screen).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any, Protocol

from agent.overlay.protocol import CoverSpec, ProtocolError, dumps, loads

PANEL = "#26303a"  # also the share self-check's idea of a cover (agent/share/selfcheck.py)
TEXT = "#ffffff"
COUNTDOWN_PANEL = "#fff4d6"
COUNTDOWN_TEXT = "#3a2a00"
BLUR_FACTOR = 24
RAISE_MS = 250


def emit(message: dict[str, Any]) -> None:
    try:
        sys.stdout.write(dumps(message))
        sys.stdout.flush()
    except (BrokenPipeError, OSError):
        os._exit(0)  # the agent is gone: nothing left to cover for


def reduce_snapshot(img: Any) -> Any:
    """A PIL image of a screen area, reduced ``BLUR_FACTOR`` times and smoothed so no character survives."""
    from PIL import Image, ImageFilter

    width, height = img.size
    small = img.resize((max(1, width // BLUR_FACTOR), max(1, height // BLUR_FACTOR)), Image.Resampling.BOX)
    return small.filter(ImageFilter.GaussianBlur(1))


class Cover(Protocol):
    spec: CoverSpec

    def apply(self, spec: CoverSpec) -> None: ...

    def lift(self) -> None: ...

    def destroy(self) -> None: ...


class HelperCore:
    def __init__(self) -> None:
        self.covers: dict[str, Cover] = {}
        self.on_top = True  # False in the lock stage: covers stop re-raising so the screen locker stays above
        self._buffer = b""

    # -- what a helper draws -------------------------------------------------------------------------------

    def new_cover(self, spec: CoverSpec) -> Cover:
        raise NotImplementedError

    def set_countdown(self, seconds: Any, text: str) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Return once every window asked for so far is on screen."""

    # -- the protocol ---------------------------------------------------------------------------------------

    def parse(self, chunk: bytes) -> Iterator[dict[str, Any]]:
        """The complete messages in what was read from stdin so far; a bad line is answered with an error."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    yield loads(line.decode("utf-8"))
                except (ProtocolError, UnicodeDecodeError) as err:
                    emit({"event": "error", "message": str(err)})

    def dispatch(self, message: dict[str, Any]) -> bool:
        """Handle one message; False when the agent says quit."""
        if message.get("op") == "quit":
            return False
        try:
            self.handle(message)
        except (ProtocolError, KeyError, TypeError, ValueError) as err:
            emit({"event": "error", "message": f"bad {message.get('op')!r} message: {err}"})
        return True

    def handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        seq = message.get("seq")
        if op == "covers":
            specs = [CoverSpec.from_json(c) for c in message["covers"]]
            self.on_top = bool(message.get("on_top", True))
            self.set_covers(specs)
            self.flush()
            emit({"event": "applied", "seq": seq, "keys": [s.key for s in specs]})
        elif op == "countdown":
            self.set_countdown(message.get("seconds"), str(message.get("text", "")))
        elif op == "ping":
            emit({"event": "pong", "seq": seq})
        else:
            raise ProtocolError(f"unknown op {op!r}")

    def set_covers(self, specs: list[CoverSpec]) -> None:
        wanted = {s.key: s for s in specs}
        for key in list(self.covers):
            if key not in wanted:
                self.covers.pop(key).destroy()
        # Blur snapshots first, before any new cover maps over the area it must capture.
        for key, spec in wanted.items():
            cover = self.covers.get(key)
            if cover is not None and cover.spec.style != spec.style:
                self.covers.pop(key).destroy()
                cover = None
            if cover is None:
                self.covers[key] = self.new_cover(spec)
            elif cover.spec != spec:
                cover.apply(spec)
