"""Fakes for agent tests: a recording cover sink and window/policy builders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent.overlay.protocol import CoverSpec
from agent.platform.base import Rect, Window
from policy.load import load_policy
from policy.model import Policy

POLICY = """
schema = 1
id = "test"
version = 1

[presence]
warn_after = "60s"
protect_after = "90s"
lock_after = "300s"
cover = "{cover}"
reveal = "{reveal}"
inhibit_lock_when = ["fullscreen", "call"]
max_inhibit = "10m"
hotkey = ""

[[customer_apps]]
name = "crm"
processes = ["chrome", "firefox*"]
title = "Salesforce"

[[customer_apps]]
name = "ledger"
processes = ["excel"]
title = "顧客台帳"
"""


def policy(cover: str = "blur", reveal: str = "activity") -> Policy:
    return load_policy(POLICY.format(cover=cover, reveal=reveal).encode(), "test.toml")


DEFAULT_RECT = Rect(10, 10, 400, 300)


def window(wid: int, title: str, process: str, rect: Rect = DEFAULT_RECT, **kw: Any) -> Window:
    return Window(id=wid, title=title, pid=1000 + wid, process_name=process, rect=rect, **kw)


class RecordingSink:
    """A CoverSink that records what the runtime asked for."""

    def __init__(self, available: bool = True) -> None:
        self.shown: list[list[CoverSpec]] = []
        self.countdowns: list[tuple[float | None, str]] = []
        self.on_top: list[bool] = []
        self.is_available = available
        self.started = False
        self.stopped = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def show(self, covers: Sequence[CoverSpec], on_top: bool = True) -> None:
        self.shown.append(list(covers))
        self.on_top.append(on_top)

    def countdown(self, seconds: float | None, text: str = "") -> None:
        self.countdowns.append((seconds, text))

    def available(self) -> bool:
        return self.is_available

    def status(self) -> dict[str, Any]:
        return {"available": self.is_available}

    @property
    def current(self) -> list[CoverSpec]:
        return self.shown[-1] if self.shown else []
