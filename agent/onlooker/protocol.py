"""The line-JSON protocol between the agent and the onlooker guard process (agent/onlooker/process.py).

Only numbers and short codes cross it: no frame, face crop, face position or feature ever does, and the agent
side (:func:`parse_event`) drops any line that carries anything else.

agent -> guard (stdin)::

    {"op": "rate", "fps": 10}        frames examined per second from now on
    {"op": "quit"}

guard -> agent (stdout)::

    {"event": "ready", "source": "device" | "file", "started": 1234.5}
        the camera gives frames; ``started`` is the monotonic time of the first frame (a video file plays
        from there in real time)
    {"event": "faces", "n": 2, "t": 1235.0}          faces in the frame examined at monotonic time t
    {"event": "unavailable", "reason": "absent" | "busy" | "no_detector" | "unsupported", "detail": "..."}
        the guard cannot count faces and exits; ``detail`` is a one-line English reason for the log
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_FACES = 64
REASONS = ("absent", "busy", "no_detector", "unsupported")
SOURCES = ("device", "file")


@dataclass(frozen=True)
class Ready:
    source: str
    started: float


@dataclass(frozen=True)
class Faces:
    n: int
    t: float


@dataclass(frozen=True)
class Unavailable:
    reason: str
    detail: str


GuardEvent = Ready | Faces | Unavailable


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":")) + "\n"


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def parse_event(line: str) -> GuardEvent | None:
    """One line from the guard, or None for anything that is not exactly a known message of numbers and
    codes (a stray print, or a line carrying more than a count, is dropped, never passed on)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    event = message.get("event")
    if event == "faces" and set(message) == {"event", "n", "t"}:
        n, t = message["n"], _number(message["t"])
        if isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_FACES and t is not None:
            return Faces(n, t)
    elif event == "ready" and set(message) == {"event", "source", "started"}:
        started = _number(message["started"])
        if message["source"] in SOURCES and started is not None:
            return Ready(str(message["source"]), started)
    elif (
        event == "unavailable"
        and set(message) == {"event", "reason", "detail"}
        and message["reason"] in REASONS
        and isinstance(message["detail"], str)
    ):
        return Unavailable(str(message["reason"]), message["detail"][:300])
    return None


def parse_op(line: str) -> dict[str, Any] | None:
    """One line from the agent (the guard's side): {"op": "rate", "fps": n} or {"op": "quit"}."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("op") == "quit":
        return {"op": "quit"}
    fps = message.get("fps")
    if message.get("op") == "rate" and isinstance(fps, int) and not isinstance(fps, bool) and 1 <= fps <= 30:
        return {"op": "rate", "fps": fps}
    return None
