"""The in-process event stream: every part of the agent publishes :class:`AgentEvent`s here.

The reporting layer (``agent.report.events``) turns each kind into an OCSF record, the outbox persists it,
the tray shows it. Event kinds (:class:`Kind`) are part of the record contract shared with the server
(:mod:`core.records`). Producers put only rule names, check ids, app names, counts and ids into ``data`` —
never window titles, screen content, keystrokes, URLs or command lines (SPEC.md, Events).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.records import Kind


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


__all__ = ["AgentEvent", "EventStream", "Kind"]
