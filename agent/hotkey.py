"""The global "step away now" hotkey (pynput ``GlobalHotKeys``).

pynput opens a display connection when it is imported (STYLE.md), so it is imported here, inside
:func:`start_hotkey`, and only when a hotkey is configured. Only the configured combination is acted on;
no key is recorded, logged or reported (SPEC.md: no keystrokes ever leave the PC).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from agent.platform.base import PlatformError

logger = logging.getLogger(__name__)


class HotkeyHandle(Protocol):
    def stop(self) -> None: ...


def start_hotkey(combo: str, callback: Callable[[], None]) -> HotkeyHandle:
    """Listen for ``combo`` (pynput syntax, e.g. ``<ctrl>+<alt>+m``) and call ``callback`` on each press."""
    try:
        from pynput import keyboard
    except Exception as err:  # pynput raises ImportError or Xlib errors when there is no usable display
        raise PlatformError(f"global hotkey unavailable ({type(err).__name__}: {err})") from err
    try:
        keyboard.HotKey.parse(combo)
    except ValueError as err:
        raise PlatformError(f"presence.hotkey {combo!r} is not a valid pynput hotkey: {err}") from err

    def fire() -> None:
        try:
            callback()
        except Exception:  # a failing callback must not kill the listener thread
            logger.exception("step-away hotkey callback failed")

    try:
        listener: Any = keyboard.GlobalHotKeys({combo: fire})
        listener.daemon = True
        listener.start()
        listener.wait()  # until the X/Win32/Quartz hook is installed, so a press right after is not lost
    except Exception as err:
        raise PlatformError(f"cannot listen for the hotkey {combo}: {type(err).__name__}: {err}") from err
    return listener  # type: ignore[no-any-return]
