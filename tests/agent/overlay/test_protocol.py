from __future__ import annotations

import json

import pytest

from agent.overlay.protocol import CoverSpec, ProtocolError, covers_message, loads
from agent.platform.base import Rect


def test_round_trip_keeps_every_field() -> None:
    spec = CoverSpec("w:7", Rect(-100, 20, 640, 480), "blur", "離席中\nAway", clickable=True)
    message = loads(covers_message(3, [spec]))
    assert message["op"] == "covers" and message["seq"] == 3
    assert [CoverSpec.from_json(c) for c in message["covers"]] == [spec]
    assert covers_message(3, [spec]).endswith("\n") and "離席中" in covers_message(3, [spec])


@pytest.mark.parametrize(
    "raw",
    [
        {"key": "w:1", "x": 0, "y": 0, "w": 1},
        {"key": "w:1", "x": 0, "y": 0, "w": 1, "h": 1, "style": "transparent"},
        {"key": "w:1", "x": "left", "y": 0, "w": 1, "h": 1},
        ["not", "an", "object"],
    ],
)
def test_bad_covers_are_protocol_errors(raw: object) -> None:
    with pytest.raises(ProtocolError):
        CoverSpec.from_json(raw)


def test_bad_lines() -> None:
    with pytest.raises(ProtocolError):
        loads("{not json")
    with pytest.raises(ProtocolError):
        loads(json.dumps([1, 2]))
