"""The onlooker guard in the agent process: runs the guard process, confirms onlookers, switches the cover.

:class:`OnlookerGuard` is a supervised worker (``install_onlooker_guard`` registers it with the runtime through
the :class:`agent.host.Host` API). While the policy's ``[onlooker] mode`` is not "off" and agent.toml names a
``camera``, it keeps the guard process (``python -m agent.onlooker.process``) running, reads its face counts,
feeds them to :class:`agent.onlooker.confirm.OnlookerMachine` and, on a confirmed onlooker, switches the
``onlooker`` cover reason (mode "cover") and publishes ``onlooker.detected`` / ``onlooker.cleared`` with counts
only. OpenCV is imported by the guard process alone, never here (an import-linter contract).

Never a crash: no camera, a camera held by a meeting app, a missing face model or a guard process that keeps
dying is ``agent.degraded`` (capability ``camera``), retried every :data:`RETRY` seconds. Fail closed: an onlooker
confirmed in mode "cover" when the camera goes away stays confirmed, its cover held with :data:`BLIND_KEY`'s
message, until a camera picture clears it as usual (report mode, which covers nothing, clears it: nothing more is
known).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.frozen import helper_env, module_command, start_helper
from agent.host import Host
from agent.onlooker.confirm import CONFIRM_RATE, Decision, OnlookerMachine
from agent.onlooker.protocol import Faces, Ready, Unavailable, dumps, parse_event
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock
from policy.model import Onlooker, Policy

logger = logging.getLogger(__name__)

REASON = "onlooker"
MESSAGE_KEY = "cover.onlooker"
BLIND_KEY = "cover.onlooker_blind"  # the camera stopped while an onlooker was confirmed: the cover holds
CAPABILITY = "camera"
RETRY = 30.0  # seconds before a camera that was absent or busy is tried again
POLL = 0.5  # the worker's loop while the guard is on: policy changes, restarts, the stall watchdog
IDLE_POLL = 2.0  # while it is off: only policy changes (an idle agent wakes as little as it can, issue 16)
STALL = 5.0  # seconds without a count from a running guard before it is killed and restarted
MAX_QUICK_EXITS = 3  # guard exits in a row, each within QUICK_EXIT of its start, before it counts as failing
QUICK_EXIT = 60.0


class OnlookerGuard:
    def __init__(
        self,
        policy: Callable[[], Policy | None],
        set_cover_reason: Callable[[str, bool, str | None], None],
        report_degraded: Callable[[str, str, str], None],
        stream: EventStream,
        clock: Clock,
        *,
        camera: str | None,
        python: str | None = None,
        wrap: Sequence[str] = (),
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        retry: float = RETRY,
    ) -> None:
        self._policy = policy
        self._set_cover_reason = set_cover_reason
        self._report_degraded = report_degraded
        self.stream = stream
        self.clock = clock
        self.camera = camera
        # Tests wrap the command (strace) to watch what the guard process does. A frozen build has no `-m`
        # (agent/frozen.py); the Linux one leaves OpenCV out, so its guard reports the camera degraded.
        self._command = list(command) if command else module_command("agent.onlooker.process", python)
        self._wrap = list(wrap)
        base = helper_env(env)
        base["PYTHONDONTWRITEBYTECODE"] = "1"  # the guard writes nothing to disk, not even .pyc files
        base["OPENCV_OPENCL_DEVICE"] = "disabled"  # no OpenCL kernel cache on disk either
        self._env = base
        self._retry = retry
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._settings: Onlooker | None = None
        self._machine: OnlookerMachine | None = None
        self._rate = 0
        self._retry_at = 0.0
        self._last_count_at = 0.0
        self._ready = False
        self._source: str | None = None
        self._started_at: float | None = None  # monotonic time of the first frame (a video plays from it)
        self._faces: int | None = None
        self._unavailable: str | None = None
        self._quick_exits = 0
        self._spawned_at = 0.0
        self._announced = False
        self._blind = False  # an onlooker's cover held while the camera gives no picture

    # ---- the supervised worker -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                stop.wait(self._tick())
        finally:
            self._clear("stopped")
            self._stop_process()

    def _tick(self) -> float:
        """One look at the policy and the guard process; returns the seconds until the next."""
        policy = self._policy()
        settings = policy.onlooker if policy is not None else Onlooker()
        if settings.mode == "off":
            self._clear("off")  # first: lift the cover and ignore any count still on its way
            self._stop_process()
            with self._lock:
                self._settings, self._announced, self._unavailable = None, False, None
            return IDLE_POLL
        if self.camera is None:
            self._report_degraded(
                CAPABILITY,
                "not_configured",
                "the policy asks for the onlooker guard but agent.toml sets no camera",
            )
            with self._lock:
                self._unavailable = "not_configured"
            return IDLE_POLL
        with self._lock:
            if settings != self._settings:
                self._reconfigure(settings)
            proc = self._proc
            now = self.clock.monotonic()
            if proc is not None and self._ready and now - self._last_count_at > max(STALL, 3.0 / self._rate):
                logger.warning("onlooker guard gave no count for %.0f s; restarting it", STALL)
                proc.kill()
            if proc is None and now >= self._retry_at:
                self._spawn(settings)
        return POLL

    def _reconfigure(self, settings: Onlooker) -> None:
        """A new [onlooker] section: a new confirmation machine (clearing any onlooker), the new frame rate."""
        old = self._settings
        self._settings = settings
        self._blind = False  # the new machine decides from the next picture
        if self._machine is not None and old is not None:
            self._finish(self._machine.reset(), old)  # lifts the old mode's cover, if any
        self._machine = OnlookerMachine(
            settings.faces_allowed, settings.confirm_ms / 1000.0, settings.clear_after
        )
        self._send_rate(settings.frame_rate)

    # ---- the guard process -----------------------------------------------------------------------------
    def _spawn(self, settings: Onlooker) -> None:
        assert self.camera is not None
        argv = [*self._wrap, *self._command, "--camera", self.camera, "--fps", str(settings.frame_rate)]
        try:
            proc = start_helper(argv, self._env)
        except OSError as err:
            self._unavailable = "guard_failed"
            self._retry_at = self.clock.monotonic() + self._retry
            self._report_degraded(
                CAPABILITY, "guard_failed", f"cannot start the onlooker guard: {err.strerror}"
            )
            return
        self._proc = proc
        self._spawned_at = self.clock.monotonic()
        self._ready = False
        self._rate = settings.frame_rate
        threading.Thread(target=self._read, args=(proc,), name="mamori-onlooker-read", daemon=True).start()
        threading.Thread(
            target=self._read_stderr, args=(proc,), name="mamori-onlooker-err", daemon=True
        ).start()

    def _send_rate(self, fps: int) -> None:
        if self._proc is None or fps == self._rate:
            return
        self._rate = fps
        with contextlib.suppress(OSError, ValueError):
            assert self._proc.stdin is not None
            self._proc.stdin.write(dumps({"op": "rate", "fps": fps}))
            self._proc.stdin.flush()

    def _stop_process(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.write(dumps({"op": "quit"}))
            proc.stdin.close()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        unavailable: Unavailable | None = None
        for line in proc.stdout:
            event = parse_event(line)
            if isinstance(event, Faces):
                self._count(proc, event)
            elif isinstance(event, Ready):
                self._started(proc, event)
            elif isinstance(event, Unavailable):
                unavailable = event
        proc.wait()
        self._exited(proc, unavailable)

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.strip():
                logger.debug("onlooker guard: %s", line.rstrip()[:200])

    def _started(self, proc: subprocess.Popen[str], event: Ready) -> None:
        with self._lock:
            if proc is not self._proc or self._settings is None:
                return
            self._ready = True
            self._source = event.source
            self._started_at = event.started
            self._unavailable = None
            self._last_count_at = self.clock.monotonic()
            announce = not self._announced
            self._announced = True
            settings = self._settings
            seeing_again, self._blind = self._blind, False
        logger.info("onlooker guard: counting faces (%s, %d per second)", event.source, settings.frame_rate)
        if seeing_again:  # the held cover is an onlooker's again, until the pictures clear it
            self._set_cover_reason(REASON, True, MESSAGE_KEY)
        if announce:  # the worker is told the camera is in use, and why (agent/ui/notify.py)
            self._publish(Kind.ONLOOKER_STARTED, {"mode": settings.mode, "frame_rate": settings.frame_rate})

    def _count(self, proc: subprocess.Popen[str], event: Faces) -> None:
        with self._lock:
            if proc is not self._proc or self._machine is None or self._settings is None:
                return
            self._last_count_at = self.clock.monotonic()
            self._faces = event.n
            decision = self._machine.update(event.n, event.t)
            settings = self._settings
            self._send_rate(CONFIRM_RATE if decision.pending else settings.frame_rate)
        if decision.changed:
            self._finish(decision, settings)

    def _finish(self, decision: Decision | None, settings: Onlooker) -> None:
        """Switch the cover reason and say so, for a decision that confirmed or cleared an onlooker."""
        if decision is None or not decision.changed:
            return
        data: dict[str, Any] = {
            "faces": decision.most,
            "allowed": settings.faces_allowed,
            "mode": settings.mode,
        }
        if decision.onlooker:
            if settings.mode == "cover":
                self._set_cover_reason(REASON, True, MESSAGE_KEY)
            self._publish(Kind.ONLOOKER_DETECTED, data)
        else:
            if settings.mode == "cover":
                self._set_cover_reason(REASON, False, None)
            self._publish(Kind.ONLOOKER_CLEARED, {**data, "duration_s": round(decision.duration, 1)})

    def _exited(self, proc: subprocess.Popen[str], unavailable: Unavailable | None) -> None:
        with self._lock:
            if proc is not self._proc:
                return
            self._proc = None
            settings = self._settings
            machine = self._machine
            now = self.clock.monotonic()
            if unavailable is not None:
                reason, detail, delay = unavailable.reason, unavailable.detail, self._retry
            else:
                quick = now - self._spawned_at < QUICK_EXIT
                self._quick_exits = self._quick_exits + 1 if quick else 0
                failing = self._quick_exits >= MAX_QUICK_EXITS
                reason = "guard_failed" if failing else ""
                detail = f"the onlooker guard exited with {proc.returncode}"
                delay = self._retry if failing else 1.0
            self._ready = False
            self._faces = None
            self._retry_at = now + delay
            if reason:
                self._unavailable = reason
            # Fail closed: with no picture, an onlooker in front of the screen cannot be told from one who left.
            hold = (
                machine is not None and machine.onlooker and settings is not None and settings.mode == "cover"
            )
            cleared = machine.reset() if machine is not None and not hold else None
            newly_blind = hold and not self._blind
            self._blind = self._blind or hold
        logger.warning("onlooker guard stopped (%s); trying again in %.0f s", detail, delay)
        if reason:
            self._report_degraded(CAPABILITY, reason, detail)
        if newly_blind:
            logger.warning("the camera stopped while an onlooker was seen: customer data stays covered")
            self._set_cover_reason(REASON, True, BLIND_KEY)
        if settings is not None:
            self._finish(cleared, settings)

    def _clear(self, why: str) -> None:
        with self._lock:
            machine, settings = self._machine, self._settings
            cleared = machine.reset() if machine is not None else None
            self._machine = None
            self._faces = None
            self._blind = False
        if settings is not None:
            self._finish(cleared, settings)
        logger.debug("onlooker guard idle (%s)", why)

    def _publish(self, kind: Kind, data: Mapping[str, Any]) -> None:
        self.stream.publish(AgentEvent(kind, self.clock.now(), dict(data)))

    # ---- status ----------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def status(self) -> dict[str, Any]:
        """For the status window and ``mamori agent status``: counts and states, never an image."""
        with self._lock:
            settings = self._settings
            return {
                "mode": settings.mode if settings is not None else "off",
                "camera": "configured" if self.camera is not None else "none",
                "running": self._proc is not None and self._ready,
                "source": self._source if self._ready else None,
                "started": self._started_at if self._ready else None,
                "faces": self._faces,
                "onlooker": bool(self._machine and self._machine.onlooker),
                "blind": self._blind,  # covered for an onlooker seen before the camera stopped
                "unavailable": self._unavailable,
                "frame_rate": self._rate if self._proc is not None else 0,
            }


def install_onlooker_guard(
    host: Host,
    stream: EventStream,
    clock: Clock,
    camera: str | None,
    *,
    wrap: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    retry: float = RETRY,
) -> OnlookerGuard:
    """Create the guard and register it with ``host`` (a supervised worker and the ``onlooker`` status)."""
    guard = OnlookerGuard(
        host.policy,
        host.set_cover_reason,
        host.report_degraded,
        stream,
        clock,
        camera=camera,
        wrap=wrap,
        env=env,
        retry=retry,
    )
    host.add_worker("onlooker", guard.run)
    host.add_status_provider("onlooker", guard.status)
    return guard
