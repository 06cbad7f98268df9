"""What every clipboard backend offers the guard (agent/clipboard/guard.py), and its errors.

A backend reports who owns each selection it knows (:class:`Owner`: the owning process, never the content)
and replaces a selection's content with the agent's notice, or empties it. It never reads the content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from core.errors import MamoriError

Selection = Literal["clipboard", "primary"]
CLIPBOARD: Selection = "clipboard"
PRIMARY: Selection = "primary"


class ClipboardError(MamoriError):
    """A clipboard operation failed; ``selection`` names the one it was about."""

    def __init__(self, message: str, selection: str = "") -> None:
        super().__init__(message)
        self.selection = selection


@dataclass(frozen=True)
class Owner:
    """Who owns one selection right now.

    ``serial`` changes whenever the content changes hands (X11: the server's timestamp of the ownership,
    Windows: the clipboard sequence number, macOS: the pasteboard's change count), so the guard decides once
    per copy. ``pid`` / ``process_name``: the owning process, "" / None when unknown (nobody owns it, or the OS
    does not say). ``window_ids``: top-level windows the backend knows belong to the same client (X11: the same
    X connection), for rules that match titles. ``ours``: the agent's own notice (or emptiness) owns it.
    ``previous``: the last other app that owned the selection before this owner (X11, which sees every change;
    None elsewhere), so a clipboard manager that took the content over can be judged by where it came from.
    """

    selection: Selection
    serial: int
    pid: int | None = None
    process_name: str = ""
    window_ids: frozenset[int] = field(default_factory=frozenset)
    ours: bool = False
    previous: Owner | None = None

    @property
    def empty(self) -> bool:
        return self.pid is None and not self.process_name and not self.window_ids and not self.ours


class ClipboardBackend(Protocol):
    """One OS's clipboard. Thread-safe: the guard calls it from its own worker thread."""

    name: str
    selections: tuple[Selection, ...]  # what this OS has: X11 clipboard and primary, else clipboard only
    # Seconds between looks while no protection is on: how often owners must be read to know who copied
    # (macOS attributes a copy to the app in front when the look sees it); X11 is told by XFIXES events. At
    # most 1 s: the guard notices the agent stopping between looks.
    idle_poll: float

    def owners(self) -> list[Owner]:
        """The owner of each selection (cheap: called a few times a second while protection is on)."""
        ...

    def take(self, selection: Selection, notice: str | None) -> None:
        """Own ``selection`` with ``notice`` as its only content (None: empty). Raises ClipboardError."""
        ...

    def close(self) -> None: ...
