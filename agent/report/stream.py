"""The in-process event stream: every part of the agent publishes :class:`AgentEvent`s here.

The reporting layer (``agent.report.events``) turns each kind into an OCSF record, the outbox persists it,
the tray shows it. Producers put only rule names, check ids, app names, counts and ids into ``data`` — never
window titles, screen content, keystrokes, URLs or command lines (SPEC.md, Events).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """Every event kind the agent emits. Adding one means mapping it in agent/report/events.py."""

    # presence (Compliance Finding 2003 for protection actions, Authentication 3002 for lock/unlock)
    PRESENCE_STAGE = "presence.stage"  # data: stage, previous
    PROTECTION_APPLIED = "protection.applied"  # data: reason (away|share|posture|ack|step_away), rules, count
    PROTECTION_REMOVED = "protection.removed"  # data: reason, rules, count
    SESSION_LOCKED = "session.locked"  # data: method
    SESSION_UNLOCKED = "session.unlocked"
    LOCK_FAILED = "session.lock_failed"  # data: method, reason
    # posture (Compliance Finding 2003; Tunnel Activity 4014 for VPN up/down)
    POSTURE_FINDING = (
        "posture.finding"  # data: check_id, status, previous, mode, enforcement (none|warn|block)
    )
    VPN_UP = "vpn.up"  # data: interface
    VPN_DOWN = "vpn.down"  # data: interface
    # screen share (Compliance Finding 2003)
    SHARE_STARTED = "share.started"  # data: app
    SHARE_ENDED = "share.ended"  # data: app, duration_s
    SHARE_SELFCHECK_FAILED = "share.selfcheck_failed"  # data: rules, count
    # agent state (Device Config State Change 5019)
    CAPABILITY_DEGRADED = "agent.degraded"  # data: capability, reason
    PROTECTION_PAUSED = "agent.paused"  # data: reason_code, minutes
    PROTECTION_RESUMED = "agent.resumed"
    AGENT_STARTED = "agent.started"
    AGENT_STOPPED = "agent.stopped"  # clean stop notice
    POLICY_APPLIED = "policy.applied"  # data: policy_id, version
    POLICY_REJECTED = "policy.rejected"  # data: policy_id, version, reason
    POLICY_ACKNOWLEDGED = "policy.acknowledged"  # data: policy_id, version
    HEARTBEAT = "heartbeat"  # data: state, stage, failing, policy_id, policy_version, uptime_s
    # reporting itself (Device Config State Change 5019; built by agent/report, not published by producers)
    REPORT_GAP = (
        "report.gap"  # data: dropped/coalesced {kind: n}, classes {class_uid: n}, first/last_sequence
    )
    REPORT_REJECTED = "report.rejected"  # data: count, uids, reasons {code: n}


@dataclass(frozen=True)
class AgentEvent:
    kind: Kind
    time: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


class EventStream:
    """Thread-safe fan-out: each subscriber gets its own queue of every event published after it subscribed."""

    def __init__(self, history: int = 200) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[queue.Queue[AgentEvent]] = []
        self._history: list[AgentEvent] = []
        self._history_max = history

    def publish(self, event: AgentEvent) -> None:
        with self._lock:
            self._history.append(event)
            del self._history[: -self._history_max]
            subscribers = list(self._subscribers)
        for q in subscribers:
            q.put(event)

    def subscribe(self) -> queue.Queue[AgentEvent]:
        q: queue.Queue[AgentEvent] = queue.Queue()
        with self._lock:
            self._subscribers.append(q)
        return q

    def recent(self) -> list[AgentEvent]:
        with self._lock:
            return list(self._history)
