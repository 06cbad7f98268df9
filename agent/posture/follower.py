"""Runs the posture monitor on the agent's current policy and turns a block into the "posture" cover reason."""

from __future__ import annotations

import threading

from agent.decide.enforcement import EnforcementState
from agent.host import Host
from agent.posture.base import CheckResult, HostProbe
from agent.posture.monitor import PostureMonitor, WatcherFactory
from agent.report.stream import EventStream
from core.clock import Clock
from policy.model import Policy

POLICY_FOLLOW_INTERVAL = 2.0


class PostureFollower:
    def __init__(
        self,
        host: Host,
        stream: EventStream,
        clock: Clock,
        *,
        probe: HostProbe | None = None,
        watcher_factory: WatcherFactory | None = None,
    ) -> None:
        self.host = host
        self.stream = stream
        self.clock = clock
        self._probe = probe
        self._watcher_factory = watcher_factory
        self._monitor: PostureMonitor | None = None
        self._policy: Policy | None = None

    def _on_change(self, state: EnforcementState, _results: list[CheckResult]) -> None:
        self.host.set_cover_reason("posture", bool(state.block), state.message_key if state.block else None)

    def _new_monitor(self, policy: Policy) -> PostureMonitor:
        if self._watcher_factory is not None:
            return PostureMonitor(
                policy,
                self.clock,
                self._on_change,
                self.stream,
                host=self._probe,
                watcher_factory=self._watcher_factory,
            )
        return PostureMonitor(policy, self.clock, self._on_change, self.stream, host=self._probe)

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                policy = self.host.policy()
                if policy is not None and policy is not self._policy:
                    if self._monitor is None:
                        self._monitor = self._new_monitor(policy)
                        self._monitor.start()
                    else:
                        self._monitor.set_policy(policy)
                    self._policy = policy
                stop.wait(POLICY_FOLLOW_INTERVAL)
        finally:
            if self._monitor is not None:
                self._monitor.stop()
                self._monitor = None
                self._policy = None

    def status(self) -> dict[str, object]:
        monitor = self._monitor
        if monitor is None:
            # A policy not yet handed to a monitor is a policy not yet checked: pending (PostureMonitor.status).
            pending = self.host.policy() is not None
            return {
                "pending": pending,
                "block": False,
                "blocking": [],
                "warnings": [],
                "block_at": None,
                "checks": [],
            }
        return monitor.status()
