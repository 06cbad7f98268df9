"""The state summary heartbeats and checkins carry (SPEC.md, "Server API": online / away / non_compliant).

Derived from the event stream as the reporting service persists it: the last presence stage, the OS lock
state and the posture checks failing now. Counts and ids only; nothing a worker typed or saw.
"""

from __future__ import annotations

from typing import Any

from agent.report.stream import AgentEvent, Kind
from core.clock import Clock
from policy.model import Policy

AWAY_STAGES = frozenset({"protect", "lock", "locked", "away"})


class DeviceState:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._stage: str | None = None
        self._failing: dict[str, str] = {}
        self._locked = False
        self._started_mono = clock.monotonic()

    def track(self, event: AgentEvent) -> None:
        data = event.data
        if event.kind == Kind.PRESENCE_STAGE and isinstance(data.get("stage"), str):
            self._stage = data["stage"]
        elif event.kind == Kind.SESSION_LOCKED:
            self._locked = True
        elif event.kind == Kind.SESSION_UNLOCKED:
            self._locked = False
        elif event.kind == Kind.POSTURE_FINDING and isinstance(data.get("check_id"), str):
            if data.get("status") in ("fail", "error") and data.get("mode") not in ("off", None):
                self._failing[data["check_id"]] = str(data.get("status"))
            else:
                self._failing.pop(data["check_id"], None)

    def summary(self, policy: Policy | None) -> dict[str, Any]:
        if self._failing:
            state = "non_compliant"
        elif self._locked or (self._stage in AWAY_STAGES):
            state = "away"
        else:
            state = "online"
        return {
            "state": state,
            "stage": self._stage,
            "failing": sorted(self._failing),
            "policy_id": policy.id if policy else None,
            "policy_version": policy.version if policy else None,
            "uptime_s": round(max(0.0, self.clock.monotonic() - self._started_mono), 1),
        }


def quit_allowed(policy: Policy | None) -> bool | None:
    """What the clean-stop checkin says of quitting: whether the policy in force lets the worker quit (the
    server alerts on a stop the policy forbids); None without a policy."""
    return policy.worker.allow_quit if policy is not None else None
