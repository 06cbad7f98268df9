"""Runs the cover helper process and keeps it running (SPEC.md, "Cover": a GUI crash cannot take the agent down).

The supervisor remembers the desired state (the last covers and countdown messages). When the helper exits
for any reason its stdout reaches EOF; the reader thread then starts a new helper at once and re-sends that
state, so covers are back within the helper's start-up time (measured in benchmarks/, well under 1 s).
A helper that stops answering pings is killed and restarted the same way. When it keeps dying
(``max_restarts`` within ``restart_window`` seconds) covering is declared impossible: :meth:`available`
turns False and ``on_failure`` is called so that the agent locks instead.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from agent.frozen import helper_env, module_command, start_helper
from agent.overlay.protocol import CoverSpec, ProtocolError, countdown_message, covers_message, dumps, loads
from core.clock import Clock, SystemClock

logger = logging.getLogger(__name__)


class CoverSink(Protocol):
    """What the runtime needs from a cover implementation (the helper process, or a recording fake)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def show(self, covers: Sequence[CoverSpec], on_top: bool = True) -> None: ...
    def countdown(self, seconds: float | None, text: str = "") -> None: ...
    def available(self) -> bool: ...
    def status(self) -> dict[str, Any]: ...


class OverlaySupervisor:
    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        command: Sequence[str] | None = None,
        on_click: Callable[[str], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        max_restarts: int = 5,
        restart_window: float = 30.0,
        ping_interval: float = 2.0,
        clock: Clock | None = None,
    ) -> None:
        self._env = helper_env(env)
        self._command = list(command) if command else module_command("agent.overlay.helper", python)
        self._on_click = on_click
        self._on_failure = on_failure
        self._max_restarts = max_restarts
        self._restart_window = restart_window
        self._ping_interval = ping_interval
        self._clock = clock or SystemClock()
        self._lock = threading.RLock()
        self._applied = threading.Condition(self._lock)
        self._proc: subprocess.Popen[str] | None = None
        self._seq = 0
        self._covers_msg: str | None = None
        self._covers_seq = 0
        self._countdown_msg: str | None = None
        self._applied_seq = -1
        self._applied_keys: tuple[str, ...] = ()
        self._last_pong = 0.0
        self._deaths: deque[float] = deque()
        self._restarts = 0
        self._gave_up: str | None = None
        self._stopping = threading.Event()
        self._last_error: str | None = None
        self._pinger: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._proc is None and self._gave_up is None:
                self._spawn()
        if self._pinger is None and self._ping_interval > 0:
            self._pinger = threading.Thread(target=self._ping_loop, name="mamori-overlay-ping", daemon=True)
            self._pinger.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self._proc
            self._proc = None
        if proc is not None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.write(dumps({"op": "quit"}))
                proc.stdin.flush()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _spawn(self) -> None:
        try:
            proc = start_helper(self._command, self._env)
        except OSError as err:
            self._give_up(f"cannot start the cover helper: {err.strerror}")
            return
        self._proc = proc
        self._last_pong = self._clock.monotonic()
        threading.Thread(target=self._read, args=(proc,), name="mamori-overlay-read", daemon=True).start()
        threading.Thread(
            target=self._read_stderr, args=(proc,), name="mamori-overlay-err", daemon=True
        ).start()
        # Re-send the desired state; the helper reads it as soon as Tk is up.
        for message in (self._countdown_msg, self._covers_msg):
            if message is not None:
                self._write(proc, message)

    def _give_up(self, reason: str) -> None:
        logger.error("cover helper unavailable: %s", reason)
        self._gave_up = reason
        self._proc = None
        if self._on_failure is not None:
            threading.Thread(target=self._on_failure, args=(reason,), daemon=True).start()

    def _write(self, proc: subprocess.Popen[str], message: str) -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(message)
            proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the reader sees the exit and restarts the helper with the desired state

    # ---- reading ---------------------------------------------------------------------------------------
    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                message = loads(line)
            except ProtocolError:
                continue
            self._handle(message)
        proc.wait()
        self._exited(proc)

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip():
                logger.debug("cover helper: %s", line.rstrip())

    def _handle(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "applied":
            with self._applied:
                seq = message.get("seq")
                if isinstance(seq, int) and seq > self._applied_seq:
                    self._applied_seq = seq
                    self._applied_keys = tuple(str(k) for k in message.get("keys", ()))
                self._applied.notify_all()
        elif event == "pong":
            with self._lock:
                self._last_pong = self._clock.monotonic()
        elif event == "clicked" and self._on_click is not None:
            self._on_click(str(message.get("key", "")))
        elif event == "error":
            with self._lock:
                self._last_error = str(message.get("message", ""))
            logger.warning("cover helper: %s", self._last_error)

    def _exited(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            if self._stopping.is_set() or proc is not self._proc:
                return
            now = self._clock.monotonic()
            self._deaths.append(now)
            while self._deaths and now - self._deaths[0] > self._restart_window:
                self._deaths.popleft()
            logger.warning("cover helper exited with %s; restarting", proc.returncode)
            if len(self._deaths) > self._max_restarts:
                detail = f"; last error: {self._last_error}" if self._last_error else ""
                self._give_up(
                    f"the cover helper exited {len(self._deaths)} times in {self._restart_window:.0f}s{detail}"
                )
                return
            self._restarts += 1
            self._applied_seq = -1
            self._spawn()

    def _ping_loop(self) -> None:
        while not self._stopping.wait(self._ping_interval):
            with self._lock:
                proc = self._proc
                if proc is None:
                    continue
                if self._clock.monotonic() - self._last_pong > 3 * self._ping_interval:
                    logger.warning("cover helper stopped answering; restarting it")
                    proc.kill()  # the reader thread restarts it
                    continue
                self._seq += 1
                self._write(proc, dumps({"op": "ping", "seq": self._seq}))

    # ---- CoverSink -------------------------------------------------------------------------------------
    def show(self, covers: Sequence[CoverSpec], on_top: bool = True) -> None:
        """Draw ``covers``; ``on_top`` False stops re-raising them (the lock stage: the locker stays above)."""
        with self._lock:
            self._seq += 1
            self._covers_seq = self._seq
            self._covers_msg = covers_message(self._seq, covers, on_top)
            if self._proc is not None:
                self._write(self._proc, self._covers_msg)

    def countdown(self, seconds: float | None, text: str = "") -> None:
        with self._lock:
            self._seq += 1
            self._countdown_msg = countdown_message(self._seq, seconds, text)
            if self._proc is not None:
                self._write(self._proc, self._countdown_msg)

    def available(self) -> bool:
        return self._gave_up is None

    def wait_applied(self, timeout: float) -> bool:
        """Block until the helper has drawn the last covers sent (tests and benchmarks)."""
        with self._applied:
            return self._applied.wait_for(lambda: self._applied_seq >= self._covers_seq, timeout=timeout)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    @property
    def restarts(self) -> int:
        return self._restarts

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "running": self._proc is not None and self._proc.poll() is None,
                "pid": self.pid,
                "restarts": self._restarts,
                "available": self._gave_up is None,
                "unavailable_reason": self._gave_up,
                "shown": list(self._applied_keys),
            }
