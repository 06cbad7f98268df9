"""Locking an X11 session (used by agent/platform/linux_x11.py; :func:`run_locker` by linux_wayland.py too).

- lock: agent.toml ``lock_command``, else ``loginctl lock-session``, else ``xdg-screensaver lock``.
- after a lock request, a locker that neither starts the X screensaver nor tells logind (i3lock, xsecurelock,
  xscreensaver) counts as locked while another client holds the keyboard grab. A lock program that merely
  keeps running is no evidence (``sleep 25`` locks nothing): the lock is verified by what the X server says.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence

from agent.platform import logind
from agent.platform.base import PlatformError
from agent.platform.x11_display import XDisplay

LOCKER_GRACE = 10.0  # how long after a lock request a keyboard grab counts as the locker's


class SessionLocker:
    """Starts the lock program and tells, after a request, whether a screen locker holds the session."""

    def __init__(
        self, display: XDisplay, session: logind.Session | None, lock_command: Sequence[str]
    ) -> None:
        self._x = display
        self._session = session
        self.lock_command = tuple(lock_command)
        self._locker: subprocess.Popen[bytes] | None = None
        self._lock_requested_at: float | None = None
        self._lock_seen = False

    def methods(self) -> list[tuple[str, list[str]]]:
        """The ways to lock this session, best first: (method name for events, argv)."""
        if self.lock_command:
            return [("command", list(self.lock_command))]
        methods: list[tuple[str, list[str]]] = []
        if self._session is not None and shutil.which("loginctl"):
            methods.append(("loginctl", ["loginctl", "lock-session", self._session.session_id]))
        if shutil.which("xdg-screensaver"):
            methods.append(("xdg-screensaver", ["xdg-screensaver", "lock"]))
        return methods

    def lock(self) -> None:
        methods = self.methods()
        if not methods:
            raise PlatformError("no lock method: set lock_command in agent.toml or install loginctl")
        failures = []
        # The lock program locks the display this backend watches (it may not be $DISPLAY of the agent).
        env = {**os.environ, "DISPLAY": self._x.name}
        for name, argv in methods:
            problem, running = start_locker(argv, env=env)
            if problem is None:
                self._locker = running
                self._lock_requested_at = time.monotonic()
                self._lock_seen = False
                return
            failures.append(f"{name}: {problem}")
        raise PlatformError("cannot lock the session (" + "; ".join(failures) + ")")

    def locker_evidence(self) -> bool:
        """After our lock request: is a screen locker holding the session?

        Lockers such as i3lock, xsecurelock or xscreensaver neither start the X screensaver nor tell logind.
        They do grab the keyboard for as long as the screen is locked (a locker that cannot grab it refuses
        to lock). This is only asked after a lock request, because ordinary programs grab the keyboard
        briefly (menus, drags). A lock program that is still running proves nothing by itself.
        """
        if self._lock_requested_at is None:
            return False
        grabbed = self._keyboard_grabbed_elsewhere()
        if grabbed:
            self._lock_seen = True
        elif self._lock_seen or (
            time.monotonic() - self._lock_requested_at > LOCKER_GRACE
            and (self._locker is None or self._locker.poll() is not None)
        ):
            # Unlocked again, or no locker ever grabbed: stop asking. A locker still starting up (xscreensaver
            # fades out first) keeps the question open while it runs.
            self._lock_requested_at = None
        return grabbed

    def _keyboard_grabbed_elsewhere(self) -> bool:
        X = self._x.X
        try:
            with self._x.lock:
                status = self._x.root.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
                if status == X.GrabSuccess:
                    self._x.d.ungrab_keyboard(X.CurrentTime)
                    self._x.d.flush()
        except self._x.errors as err:  # the display went away (or is being closed as the agent stops)
            raise PlatformError(
                f"cannot ask the X server whether a locker holds the keyboard: {err}"
            ) from err
        return bool(status == X.AlreadyGrabbed)


def run_locker(argv: Sequence[str], settle: float = 1.0) -> str | None:
    """Start a lock program; None when it succeeded or is still running (many lockers block until unlock)."""
    return start_locker(argv, settle)[0]


def start_locker(
    argv: Sequence[str], settle: float = 1.0, env: Mapping[str, str] | None = None
) -> tuple[str | None, subprocess.Popen[bytes] | None]:
    """Start a lock program: (problem or None, the process when it is still running after ``settle``)."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
        )
    except OSError as err:
        return f"cannot run {argv[0]}: {err.strerror}", None
    try:
        _, err_out = proc.communicate(timeout=settle)
    except subprocess.TimeoutExpired:
        return None, proc
    if proc.returncode != 0:
        text = err_out.decode(errors="replace").strip().splitlines()
        return f"{argv[0]} exited {proc.returncode}" + (f": {text[-1]}" if text else ""), None
    return None, None
