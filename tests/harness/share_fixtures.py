"""Window and process lists for the share tests (tests/agent/share/data/*.json), and a scripted fake desktop.

Each JSON file is one snapshot of a machine: ``os``, ``description``, ``titles_readable``, ``windows``
(title, process_name, wm_class, pid, rect [x, y, w, h]), ``processes`` (pid, name) and the expected
``apps`` / ``unknown``. Titles, classes and process names are those the apps use (see the comments in
agent/share/signatures.py); ja and en variants are both present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.platform.base import Capabilities, Monitor, PlatformError, Rect, Window
from agent.share.detect import ProcessInfo
from agent.share.recorders import grabs_screen
from policy.model import Policy

DATA = Path(__file__).resolve().parents[1] / "agent" / "share" / "data"


@dataclass(frozen=True)
class Snapshot:
    name: str
    os: str
    description: str
    titles_readable: bool
    windows: tuple[Window, ...]
    processes: tuple[ProcessInfo, ...]
    expect_apps: tuple[str, ...]
    expect_unknown: tuple[str, ...]


def window(raw: dict[str, Any], wid: int) -> Window:
    x, y, w, h = raw["rect"]
    return Window(
        id=wid,
        title=raw["title"],
        pid=raw.get("pid"),
        process_name=raw["process_name"],
        rect=Rect(x, y, w, h),
        wm_class=raw.get("wm_class", ""),
    )


def load(path: Path) -> Snapshot:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Snapshot(
        name=path.stem,
        os=raw["os"],
        description=raw["description"],
        titles_readable=raw.get("titles_readable", True),
        windows=tuple(window(w, i + 1) for i, w in enumerate(raw["windows"])),
        # a process with "argv" is read the way the process lister reads it (agent/share/recorders.py)
        processes=tuple(
            ProcessInfo(pid=p["pid"], name=p["name"], screen_grab=grabs_screen(p["name"], p.get("argv", [])))
            for p in raw["processes"]
        ),
        expect_apps=tuple(raw["expect"]["apps"]),
        expect_unknown=tuple(raw["expect"]["unknown"]),
    )


def all_snapshots() -> list[Snapshot]:
    return [load(p) for p in sorted(DATA.glob("*.json"))]


@dataclass
class ScriptedDesktop:
    """A fake desktop whose window list the test sets; ``fail`` makes ``windows()`` raise."""

    window_list: list[Window] = field(default_factory=list)
    window_list_supported: bool = True
    fail: bool = False
    calls: int = 0

    def capabilities(self) -> Capabilities:
        return Capabilities(backend="scripted", window_list=self.window_list_supported)

    def idle_seconds(self) -> float:
        return 0.0

    def windows(self) -> list[Window]:
        self.calls += 1
        if self.fail:
            raise PlatformError("window list: X connection lost")
        return list(self.window_list)

    def monitors(self) -> list[Monitor]:
        return [Monitor(Rect(0, 0, 1920, 1080), primary=True)]

    def is_locked(self) -> bool:
        return False

    def lock(self) -> None:
        raise PlatformError("not supported")


@dataclass
class ScriptedProcesses:
    """A process lister the test drives: a list of names, or ``None`` for "cannot read"."""

    names: list[str] | None = field(default_factory=list)

    def __call__(self) -> list[ProcessInfo] | None:
        if self.names is None:
            return None
        return [ProcessInfo(pid=1000 + i, name=n) for i, n in enumerate(self.names)]


def share_policy(policy_id: str) -> Policy:
    """The share tests' policy: away stages hours off, sharing protection on, the "ledger" rule (excel,
    titles with 顧客台帳), every posture check off so that this host's VPN or disk cannot cover anything."""
    from policy.load import load_policy
    from tests.harness.policies import policy_toml

    text = policy_toml(
        policy_id=policy_id,
        presence={"warn_after": "1h", "protect_after": "2h", "lock_after": "3h", "hotkey": ""},
        customer_apps=[{"name": "ledger", "processes": ["excel"], "title": "顧客台帳"}],
        extra={"screen_share": {"protect": True}},
    )
    return load_policy(text.encode(), "policy.toml")
