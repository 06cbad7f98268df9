"""macOS backend (pyobjc Quartz, imported when the backend is built).

- idle: ``CGEventSourceSecondsSinceLastEventType(kCGEventSourceStateHIDSystemState, kCGAnyInputEventType)``:
  the HID system's idle time, which synthetic events of other apps do not reset.
- windows: ``CGWindowListCopyWindowInfo(OnScreenOnly | ExcludeDesktopElements)`` (front to back, reversed),
  layer 0 only (normal app windows; menus, the Dock and status items live on other layers). Bounds are in
  global points with the origin at the top left of the main display, as Tk uses them for the cover.
  Window titles (``kCGWindowName``) are only present with the Screen Recording permission (macOS 10.15+):
  without it title rules cannot match, so the window list is reported as unavailable and the runtime locks
  instead of covering (SPEC.md, "Degraded operation is data").
- monitors: ``CGGetActiveDisplayList`` + ``CGDisplayBounds``; primary = ``CGMainDisplayID``.
- locked: ``CGSessionCopyCurrentDictionary()["CGSSessionScreenIsLocked"]``, or the session is not on the
  console (fast user switching).
- lock: ``SACLockScreenImmediate`` from the login framework — what the menu bar's "Lock Screen" calls and the
  only method that locks at once on current macOS regardless of the "require password" delay.
- lock before sleep (:meth:`MacDesktop.watch_sleep`): an observer of ``NSWorkspaceWillSleepNotification`` on
  NSWorkspace's notification center (AppKit) locks with ``SACLockScreenImmediate`` and verifies. NSWorkspace
  posts it on the main thread's run loop, which runs while the tray (pystray's NSApplication) owns the main
  thread; an agent started without the tray gets no notification.
- permissions: ``CGPreflightScreenCaptureAccess`` (Screen Recording), ``AXIsProcessTrusted`` (Accessibility,
  needed by the global hotkey).

``quartz``, ``login``, ``accessibility`` and ``appkit`` are injected; tests pass fakes with the same
functions/constants.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable
from typing import Any

from agent.platform.base import Capabilities, Monitor, PlatformError, Rect, Window

LOGIN_FRAMEWORK = "/System/Library/PrivateFrameworks/login.framework/Versions/Current/login"
APPLICATION_SERVICES = "/System/Library/Frameworks/ApplicationServices.framework/ApplicationServices"
MAX_DISPLAYS = 16

logger = logging.getLogger(__name__)


def _load_quartz() -> Any:
    try:
        import Quartz
    except ImportError as err:
        raise PlatformError(
            "pyobjc-framework-Quartz is missing; reinstall Mamori with its macOS dependencies"
        ) from err
    return Quartz


def _load_appkit() -> Any:
    try:
        import AppKit
    except ImportError:
        return None
    return AppKit


def _load_dylib(path: str) -> Any:
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


class MacDesktop:
    def __init__(
        self,
        quartz: Any = None,
        login: Any = None,
        accessibility: Any = None,
        appkit: Any = None,
        *,
        main_run_loop: bool = True,
    ) -> None:
        """``main_run_loop``: whether something (the tray's NSApplication) runs the main thread's run loop, where
        NSWorkspace posts its sleep notification; without it there is no lock before sleep, and it says so."""
        if quartz is None:
            if sys.platform != "darwin":
                raise PlatformError("the macOS backend runs only on macOS")
            quartz = _load_quartz()
            login = _load_dylib(LOGIN_FRAMEWORK)
            accessibility = _load_dylib(APPLICATION_SERVICES)
            appkit = _load_appkit()
        self._appkit = appkit
        self._main_run_loop = main_run_loop
        self._sleep_observer: Any = None  # NSWorkspace's token for the observer, kept while it observes
        self._q = quartz
        self._login = login
        self._ax = accessibility

    # ---- permissions -----------------------------------------------------------------------------------
    def screen_recording_allowed(self) -> bool:
        preflight = getattr(self._q, "CGPreflightScreenCaptureAccess", None)
        if preflight is None:
            return True  # before macOS 10.15 titles need no permission
        return bool(preflight())

    def accessibility_allowed(self) -> bool:
        if self._ax is None:
            return False
        try:
            return bool(self._ax.AXIsProcessTrusted())
        except (AttributeError, OSError):
            return False

    def capabilities(self) -> Capabilities:
        titles = self.screen_recording_allowed()
        notes = []
        if not titles:
            notes.append(
                "Screen Recording permission missing: window titles are hidden, so Mamori locks instead of "
                "covering; allow Mamori in System Settings > Privacy & Security > Screen Recording"
            )
        if not self.accessibility_allowed():
            notes.append(
                "Accessibility permission missing: the step-away hotkey cannot work; allow Mamori in "
                "System Settings > Privacy & Security > Accessibility"
            )
        if self._login is None:
            notes.append("the login framework is unavailable: the screen cannot be locked")
        if self._appkit is None:
            notes.append("AppKit (pyobjc-framework-Cocoa) is missing: no lock before sleep")
        elif not self._main_run_loop:
            notes.append(
                "no lock before sleep without the tray: NSWorkspace notifies on the main run loop, which only "
                "the tray runs; start the agent with its tray"
            )
        return Capabilities(
            backend="macos",
            idle=True,
            window_list=titles,
            window_pids=True,
            lock=self._login is not None,
            lock_state=True,
            lock_before_sleep=self._login is not None and self._appkit is not None and self._main_run_loop,
            cover=True,
            notes=tuple(notes),
            lock_method="SACLockScreenImmediate",
        )

    # ---- Desktop ---------------------------------------------------------------------------------------
    def idle_seconds(self) -> float:
        q = self._q
        try:
            return float(
                q.CGEventSourceSecondsSinceLastEventType(
                    q.kCGEventSourceStateHIDSystemState, q.kCGAnyInputEventType
                )
            )
        except Exception as err:  # pyobjc raises its own error types
            raise PlatformError(f"HID idle query failed: {err}") from err

    def windows(self) -> list[Window]:
        q = self._q
        options = q.kCGWindowListOptionOnScreenOnly | q.kCGWindowListExcludeDesktopElements
        infos = q.CGWindowListCopyWindowInfo(options, q.kCGNullWindowID)
        if infos is None:
            raise PlatformError("CGWindowListCopyWindowInfo returned nothing")
        monitors = [m.rect for m in self.monitors()]
        out: list[Window] = []
        front = True
        for info in infos:  # front to back
            try:
                if int(info.get(q.kCGWindowLayer, 0)) != 0:
                    continue
                bounds = info[q.kCGWindowBounds]
                rect = Rect(int(bounds["X"]), int(bounds["Y"]), int(bounds["Width"]), int(bounds["Height"]))
                owner = str(info.get(q.kCGWindowOwnerName, "") or "")
                out.append(
                    Window(
                        id=int(info[q.kCGWindowNumber]),
                        title=str(info.get(q.kCGWindowName, "") or ""),
                        pid=int(info[q.kCGWindowOwnerPID]),
                        process_name=owner,
                        rect=rect,
                        wm_class=owner,
                        active=front,
                        fullscreen=rect in monitors,
                        minimized=not bool(info.get(q.kCGWindowIsOnscreen, True)),
                    )
                )
                front = False
            except (KeyError, TypeError, ValueError):
                continue  # one odd entry must not hide the others
        out.reverse()  # the Protocol wants topmost last
        return out

    def monitors(self) -> list[Monitor]:
        q = self._q
        err, ids, count = q.CGGetActiveDisplayList(MAX_DISPLAYS, None, None)
        if err != 0:
            raise PlatformError(f"CGGetActiveDisplayList failed ({err})")
        main = q.CGMainDisplayID()
        out: list[Monitor] = []
        for display in list(ids)[: int(count)]:
            b = q.CGDisplayBounds(display)
            rect = Rect(int(b.origin.x), int(b.origin.y), int(b.size.width), int(b.size.height))
            out.append(Monitor(rect, primary=display == main))
        return out

    def is_locked(self) -> bool:
        session = self._q.CGSessionCopyCurrentDictionary()
        if session is None:
            return True  # no GUI session for this process: nobody sees this screen
        if not bool(session.get("kCGSSessionOnConsoleKey", True)):
            return True
        return bool(session.get("CGSSessionScreenIsLocked", False))

    def lock(self) -> None:
        if self._login is None:
            raise PlatformError("cannot lock: the login framework is unavailable on this macOS")
        try:
            result = self._login.SACLockScreenImmediate()
        except (AttributeError, OSError) as err:
            raise PlatformError(f"SACLockScreenImmediate failed: {err}") from err
        if result not in (0, None):
            raise PlatformError(f"SACLockScreenImmediate returned {result}")

    # ---- lock before sleep -----------------------------------------------------------------------------
    def watch_sleep(self, before_sleep: Callable[[], None]) -> None:
        """Call ``before_sleep`` each time NSWorkspace says the Mac is about to sleep."""
        if self._appkit is None:
            raise PlatformError("AppKit is unavailable: reinstall Mamori with its macOS dependencies")
        if self._sleep_observer is not None:
            raise PlatformError("the sleep observer is registered already")

        def will_sleep(_notification: Any) -> None:
            try:
                before_sleep()
            except Exception:  # an exception must not cross back into AppKit
                logger.exception("lock before sleep failed")

        try:
            center = self._appkit.NSWorkspace.sharedWorkspace().notificationCenter()
            self._sleep_observer = center.addObserverForName_object_queue_usingBlock_(
                self._appkit.NSWorkspaceWillSleepNotification, None, None, will_sleep
            )
        except Exception as err:  # pyobjc raises its own error types
            raise PlatformError(f"cannot observe NSWorkspaceWillSleepNotification: {err}") from err

    def stop_watching_sleep(self) -> None:
        if self._sleep_observer is not None and self._appkit is not None:
            self._appkit.NSWorkspace.sharedWorkspace().notificationCenter().removeObserver_(
                self._sleep_observer
            )
            self._sleep_observer = None
