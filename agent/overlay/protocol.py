"""The line-JSON protocol between the agent and the cover helper process (agent/overlay/helper.py).

One JSON object per line, UTF-8. The agent always sends the *whole* desired state, so a restarted helper is
brought back by re-sending the last message of each kind.

agent -> helper (stdin)::

    {"op": "covers", "seq": 7, "covers": [{"key": "w:123", "x": 0, "y": 0, "w": 640, "h": 200,
                                          "style": "blur"|"opaque", "label": "...", "clickable": false}],
     "on_top": true}
        on_top false: stop re-raising the covers (the lock stage: a screen locker must stay above them)
    {"op": "countdown", "seq": 8, "seconds": 25.0 | null, "text": "..."}
    {"op": "ping", "seq": 9}
    {"op": "quit"}

helper -> agent (stdout)::

    {"event": "ready", "pid": 4242}
    {"event": "applied", "seq": 7, "keys": ["w:123"]}     every cover of that message is on screen
    {"event": "clicked", "key": "w:123"}                  a clickable cover was clicked (reveal = "click")
    {"event": "pong", "seq": 9}
    {"event": "error", "message": "..."}

Labels are user-facing text (ja/en); window titles are never sent — the helper does not need them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent.platform.base import Rect

Style = Literal["blur", "opaque"]


class ProtocolError(ValueError):
    """A line that is not a valid protocol message."""


@dataclass(frozen=True)
class CoverSpec:
    key: str  # stable per covered thing: "w:<window id>" or "screen:<n>"
    rect: Rect
    style: Style = "opaque"
    label: str = ""
    clickable: bool = False

    def to_json(self) -> dict[str, Any]:
        r = self.rect
        return {
            "key": self.key,
            "x": r.x,
            "y": r.y,
            "w": r.width,
            "h": r.height,
            "style": self.style,
            "label": self.label,
            "clickable": self.clickable,
        }

    @classmethod
    def from_json(cls, raw: Any) -> CoverSpec:
        if not isinstance(raw, dict):
            raise ProtocolError("a cover must be an object")
        try:
            style = raw.get("style", "opaque")
            if style not in ("blur", "opaque"):
                raise ProtocolError(f"unknown cover style {style!r}")
            rect = Rect(int(raw["x"]), int(raw["y"]), int(raw["w"]), int(raw["h"]))
            return cls(
                str(raw["key"]), rect, style, str(raw.get("label", "")), bool(raw.get("clickable", False))
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"bad cover: {err}") from err


def covers_message(seq: int, covers: Sequence[CoverSpec], on_top: bool = True) -> str:
    return dumps({"op": "covers", "seq": seq, "covers": [c.to_json() for c in covers], "on_top": on_top})


def countdown_message(seq: int, seconds: float | None, text: str = "") -> str:
    return dumps({"op": "countdown", "seq": seq, "seconds": seconds, "text": text})


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"


def loads(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"not JSON: {err}") from err
    if not isinstance(value, dict):
        raise ProtocolError("a message must be a JSON object")
    return value
