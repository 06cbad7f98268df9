"""The one interface every desktop backend implements (STYLE.md: psutil/pynput model).

Backends return frozen dataclasses, never library objects. Shared code asks the capability flags on
:class:`Capabilities`, never ``sys.platform``. OS errors are translated to :class:`PlatformError` at the
backend boundary, chained with ``from err``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from core.errors import MamoriError


class PlatformError(MamoriError):
    """A desktop operation failed or is unavailable on this machine."""


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Window:
    """A top-level window as the OS reports it. ``title`` never leaves the process (SPEC.md, Events)."""

    id: int
    title: str
    pid: int | None
    process_name: str  # executable base name, e.g. "chrome", "EXCEL.EXE"; "" when unknown
    rect: Rect
    wm_class: str = ""  # X11 WM_CLASS class / Windows class name / macOS owner bundle; "" when unknown
    active: bool = False
    fullscreen: bool = False
    minimized: bool = False
    # The window with its decorations when they lie outside ``rect`` (X11: the WM's title bar, from EWMH
    # _NET_FRAME_EXTENTS). The title bar shows the title, which can be customer data, so it is covered too.
    frame: Rect | None = None
    # Where ``pid`` came from: "net_wm_pid" (the window says), "xres" (X11: the X server's X-Resource client
    # pid), "os" (Windows/macOS: the OS owns the window); "" when unknown, then matching falls back to
    # ``wm_class`` (agent/decide/match.py).
    pid_source: str = ""


@dataclass(frozen=True)
class Monitor:
    rect: Rect
    primary: bool = False


@dataclass(frozen=True)
class Capabilities:
    """What this backend can do on this machine; each missing item is a degraded state to report."""

    backend: str
    idle: bool = False
    window_list: bool = False
    window_pids: bool = False
    lock: bool = False
    lock_state: bool = False
    lock_before_sleep: bool = False
    cover: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)  # human-readable reasons for missing items
    lock_method: str = ""  # how lock() locks, for events: "command", "loginctl", "LockWorkStation", ...

    def missing(self) -> list[str]:
        """Names of the essential capabilities this backend lacks (each one a degraded state to report)."""
        return [name for name in ESSENTIAL if not getattr(self, name)]


# What protection needs; a missing one is reported as ``agent.degraded`` and answered by a safer fallback.
ESSENTIAL = ("idle", "window_list", "lock", "lock_state", "cover")


class Desktop(Protocol):
    """The OS desktop as Mamori sees it."""

    def capabilities(self) -> Capabilities: ...

    def idle_seconds(self) -> float:
        """Seconds since the last keyboard/mouse input in this session."""
        ...

    def windows(self) -> list[Window]:
        """Visible top-level windows, topmost last. Empty list when unsupported (see capabilities)."""
        ...

    def monitors(self) -> list[Monitor]: ...

    def is_locked(self) -> bool:
        """True when the session is locked or the screensaver is active (counts as away)."""
        ...

    def lock(self) -> None:
        """Ask the OS to lock the session. Raises PlatformError when the request could not be made."""
        ...


@runtime_checkable
class SleepWatcher(Protocol):
    """Optional: backends that can run code before the machine sleeps (``Capabilities.lock_before_sleep``)."""

    def watch_sleep(self, before_sleep: Callable[[], None]) -> None:
        """Call ``before_sleep`` (from a backend thread) each time the OS is about to sleep."""
        ...


@runtime_checkable
class Closable(Protocol):
    def close(self) -> None: ...
