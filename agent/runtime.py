"""The agent's supervisor: workers, restarts, status, control requests (SPEC.md, "Agent behaviour").

The runtime owns no protection logic. It runs the protection loop (agent.protection) and every part plugged
in with :meth:`add_worker` in supervised threads, restarting a worker that raises or returns early; it merges
the parts' status (:meth:`add_status_provider`) into :meth:`status`; it answers the control socket. It is the
:class:`agent.host.Host` the parts see: the cover-reason and worker calls go through to the protection loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from agent.degraded import Degraded
from agent.host import Worker
from agent.hotkey import HotkeyHandle
from agent.platform.base import Desktop, PlatformError, Window
from agent.protection import Protection
from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock
from policy.model import Policy

logger = logging.getLogger(__name__)

MAX_RESTART_DELAY = 5.0
HEALTHY_RUN = 60.0

HotkeyStarter = Callable[[str, Callable[[], None]], HotkeyHandle]


class Runtime:
    def __init__(
        self,
        protection: Protection,
        degraded: Degraded,
        *,
        hotkey: HotkeyStarter | None = None,
        restart_delay: float = 0.5,
    ) -> None:
        self.protection = protection
        self.degraded = degraded
        self._hotkey_starter = hotkey
        self._hotkey: HotkeyHandle | None = None
        self._stop = threading.Event()
        self._workers: dict[str, Worker] = {}
        self._threads: list[threading.Thread] = []
        self._status_providers: dict[str, Callable[[], object]] = {}
        self._restarts: dict[str, int] = {}
        # First restart delay of a crashed worker; it doubles up to MAX_RESTART_DELAY.
        self._supervise_delay = restart_delay
        self._started = False

    # ---- Host ------------------------------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self.protection.clock

    @property
    def stream(self) -> EventStream:
        return self.protection.stream

    @property
    def desktop(self) -> Desktop:
        return self.protection.desktop

    def policy(self) -> Policy | None:
        return self.protection.policy()

    def set_cover_reason(self, source: str, active: bool, message_key: str | None = None) -> None:
        self.protection.set_cover_reason(source, active, message_key)

    def set_inhibitor(self, name: str, active: bool) -> None:
        self.protection.set_inhibitor(name, active)

    def covered_windows(self) -> list[Window]:
        return self.protection.covered_windows()

    def report_degraded(self, capability: str, reason: str, detail: str = "") -> None:
        self.degraded.report(capability, reason, detail)

    def step_away(self) -> None:
        self.protection.step_away()

    def lock_now(self, reason: str) -> None:
        self.protection.lock_now(reason)

    def pause(self, minutes: float) -> float:
        return self.protection.pause(minutes)

    def resume(self) -> None:
        self.protection.resume()

    def add_worker(self, name: str, target: Worker) -> None:
        self._workers[name] = target
        if self._started:
            self._start_thread(name, target)

    def add_status_provider(self, name: str, provider: Callable[[], object]) -> None:
        self._status_providers[name] = provider

    # ---- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.protection.start()
        self._start_hotkey()
        self.stream.publish(AgentEvent(Kind.AGENT_STARTED, self.clock.now(), {}))
        self._start_thread("presence", self.protection.run)
        for name, target in self._workers.items():
            self._start_thread(name, target)

    def run(self) -> None:
        """Start and block until :meth:`stop`."""
        self.start()
        self._stop.wait()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.protection.stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=3)
        if self._hotkey is not None:
            self._hotkey.stop()
        self.protection.close()
        self.stream.publish(AgentEvent(Kind.AGENT_STOPPED, self.clock.now(), {}))

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (True) or ``timeout`` (False), without polling."""
        return self._stop.wait(timeout)

    def _start_thread(self, name: str, target: Worker) -> None:
        thread = threading.Thread(
            target=self._supervise, args=(name, target), name=f"mamori-{name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _supervise(self, name: str, target: Worker) -> None:
        """Run ``target`` until stop; restart it when it raises or returns, with a backoff capped at
        MAX_RESTART_DELAY (protection must come back soon) that resets after a long healthy run."""
        delay = self._supervise_delay
        while not self._stop.is_set():
            started = self.clock.monotonic()
            try:
                target(self._stop)
            except Exception:
                logger.exception("worker %s crashed; restarting in %.1fs", name, delay)
                self.degraded.report(f"worker.{name}", "crashed")
            if self._stop.is_set():
                return
            if self.clock.monotonic() - started > HEALTHY_RUN:
                delay = self._supervise_delay
            self._restarts[name] = self._restarts.get(name, 0) + 1
            self._stop.wait(delay)
            delay = min(max(delay, 0.1) * 2, MAX_RESTART_DELAY)

    def _start_hotkey(self) -> None:
        policy = self.policy()
        combo = policy.presence.hotkey if policy is not None else ""
        if not combo or self._hotkey_starter is None:
            return
        try:
            self._hotkey = self._hotkey_starter(combo, self.step_away)
        except PlatformError as err:
            self.degraded.report("hotkey", "unavailable", str(err))

    # ---- status / control ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        policy = self.protection.policy()
        out = self.protection.status()
        out["degraded"] = self.degraded.names()
        out["policy"] = {"id": policy.id, "version": policy.version} if policy is not None else None
        out["worker"] = (
            {
                "allow_pause": policy.worker.allow_pause,
                "pause_max": policy.worker.pause_max,
                "allow_quit": policy.worker.allow_quit,
            }
            if policy is not None
            else None
        )
        out["restarts"] = dict(self._restarts)
        for name, provider in self._status_providers.items():
            try:
                out[name] = provider()
            except Exception as err:
                out[name] = {"error": type(err).__name__}
        return out

    def handle_control(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The control socket's commands: {"cmd": "status"} and {"cmd": "step_away"}."""
        cmd = request.get("cmd")
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "step_away":
            self.step_away()
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}
