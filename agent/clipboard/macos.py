"""The macOS pasteboard (pyobjc AppKit): who wrote it, and taking it over with a notice.

macOS does not say which app wrote the general pasteboard. Mamori watches ``NSPasteboard.changeCount`` (one
cheap call per look: every 0.5 s, every 0.25 s while protection is on) and takes the app that was frontmost
(``NSWorkspace.frontmostApplication``) when it saw the count change as the writer. That is right for a copy
made with Cmd+C in the app in front, and wrong for a copy written by a background process (a clipboard
manager, ``pbcopy`` in a script) or made just before switching to another app within that half second: then
the app in front is judged instead. A change that happened before the agent started is attributed to the app in
front at start.

Take over: ``clearContents`` (which makes the agent the pasteboard's owner), then the notice as
``NSPasteboardTypeString``. macOS has no primary selection; Universal Clipboard copies to nearby devices, which
no API lets another app take back.

``appkit`` is injected (NSPasteboard, NSWorkspace, NSPasteboardTypeString); tests pass a scripted fake.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from agent.clipboard.base import CLIPBOARD, ClipboardError, Owner, Selection


def _load_appkit() -> Any:
    try:
        import AppKit
    except ImportError as err:
        raise ClipboardError(
            "pyobjc-framework-Cocoa is missing; reinstall Mamori with its macOS dependencies"
        ) from err
    return AppKit


class MacClipboard:
    name = "macos"
    selections: tuple[Selection, ...] = (CLIPBOARD,)
    idle_poll = 0.5  # a copy is attributed to the app in front when a look sees it

    def __init__(self, appkit: Any = None) -> None:
        if appkit is None:
            if sys.platform != "darwin":
                raise ClipboardError("the macOS clipboard backend runs only on macOS")
            appkit = _load_appkit()
        self._appkit = appkit
        self._lock = threading.Lock()
        self._owner: Owner | None = None
        self._ours: int | None = None

    def _pasteboard(self) -> Any:
        return self._appkit.NSPasteboard.generalPasteboard()

    def owners(self) -> list[Owner]:
        with self._lock:
            try:
                count = int(self._pasteboard().changeCount())
                if self._owner is not None and self._owner.serial == count:
                    return [self._owner]
                if count == self._ours:
                    self._owner = Owner(CLIPBOARD, count, ours=True)
                    return [self._owner]
                front = self._appkit.NSWorkspace.sharedWorkspace().frontmostApplication()
                pid = int(front.processIdentifier()) if front is not None else None
                name = str(front.localizedName() or "") if front is not None else ""
            except Exception as err:  # pyobjc raises its own error types
                raise ClipboardError(f"pasteboard query failed: {err}") from err
            self._owner = Owner(CLIPBOARD, count, pid=pid, process_name=name)
            return [self._owner]

    def take(self, selection: Selection, notice: str | None) -> None:
        with self._lock:
            try:
                board = self._pasteboard()
                board.clearContents()
                if notice is not None and not board.setString_forType_(
                    notice, self._appkit.NSPasteboardTypeString
                ):
                    raise ClipboardError("the pasteboard refused the notice", selection)
                self._ours = int(board.changeCount())
            except ClipboardError:
                raise
            except Exception as err:  # pyobjc raises its own error types
                raise ClipboardError(f"pasteboard take-over failed: {err}", selection) from err
            self._owner = None

    def close(self) -> None:
        return None
