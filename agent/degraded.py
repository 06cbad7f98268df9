"""Degraded capabilities: said once each, as ``agent.degraded`` (SPEC.md: degraded operation is data)."""

from __future__ import annotations

import logging
import threading

from agent.report.stream import AgentEvent, EventStream, Kind
from core.clock import Clock

logger = logging.getLogger(__name__)


class Degraded:
    """The capabilities that do not work right now, each reported once per reason."""

    def __init__(self, stream: EventStream, clock: Clock) -> None:
        self.stream = stream
        self.clock = clock
        self._lock = threading.Lock()
        self._reasons: dict[str, str] = {}

    def report(self, capability: str, reason: str, detail: str = "") -> None:
        with self._lock:
            if self._reasons.get(capability) == reason:
                return
            self._reasons[capability] = reason
        if detail:
            logger.warning("degraded: %s (%s): %s", capability, reason, detail)
        self.stream.publish(
            AgentEvent(
                Kind.CAPABILITY_DEGRADED, self.clock.now(), {"capability": capability, "reason": reason}
            )
        )

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._reasons)
