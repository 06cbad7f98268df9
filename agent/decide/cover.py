"""Which covers to draw (SPEC.md, "Agent behaviour"). Pure: active reasons, rules, windows and monitors in,
the covers out; no OS, no clock.

While any *cover reason* is active every customer-data window is covered. "away" alone uses the policy's cover
style (blur or opaque) and may be clickable (reveal = "click"); any other reason ("share", "posture", "onlooker", "ack")
covers opaquely with the label of the first active reason in :data:`REASON_ORDER`. "lock_failed" covers every
monitor: the session should have locked and did not; so does "windows_unknown": a cover is needed and the window
list has been failing for a while, so which windows hold customer data is unknown (fail closed).

:func:`cover_state` says honestly what a plan does: "covered" (N windows), "screen" (whole screen),
"nothing_to_cover" (the rules matched no open window) or "no_rules" (the policy names no customer app).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from agent.decide.match import Match, match_windows
from agent.overlay.protocol import CoverSpec
from agent.platform.base import Monitor, Rect, Window
from policy.model import CustomerApp, Presence

# The label of the first active reason in this order is shown on opaque covers.
REASON_ORDER = ("lock_failed", "windows_unknown", "posture", "share", "onlooker", "ack", "away")
AWAY = "away"
LOCK_FAILED = "lock_failed"
WINDOWS_UNKNOWN = "windows_unknown"
WHOLE_SCREEN = (LOCK_FAILED, WINDOWS_UNKNOWN)


@dataclass(frozen=True)
class Reason:
    """One active cover reason: the catalog key of its label and the reason code its events carry."""

    message_key: str
    event_reason: str


@dataclass(frozen=True)
class CoverPlan:
    covers: list[CoverSpec]
    matches: list[Match]

    @property
    def rules(self) -> list[str]:
        return sorted({m.rule for m in self.matches})

    @property
    def count(self) -> int:
        """Windows covered, or covers drawn when no window matched (whole-screen covers)."""
        return len(self.matches) if self.matches else len(self.covers)


def plan_covers(
    reasons: Mapping[str, Reason],
    rules: Sequence[CustomerApp],
    windows: Sequence[Window],
    monitors: Sequence[Monitor],
    *,
    presence: Presence,
    label: Callable[[str], str],
) -> CoverPlan:
    """The covers for ``reasons``; ``label(message_key)`` gives the text drawn on opaque covers."""
    whole = next((r for r in WHOLE_SCREEN if r in reasons), None)
    if whole is not None:
        text = label(reasons[whole].message_key)
        return CoverPlan(
            [CoverSpec(f"screen:{i}", m.rect, "opaque", text) for i, m in enumerate(monitors)], []
        )
    if not reasons:
        return CoverPlan([], [])
    matches = match_windows(rules, windows)
    only_away = set(reasons) == {AWAY}
    top = next((r for r in REASON_ORDER if r in reasons), sorted(reasons)[0])
    text = label(reasons[top].message_key)
    style = presence.cover if only_away else "opaque"
    clickable = only_away and presence.reveal == "click"
    covers: list[CoverSpec] = []
    for m in matches:
        covers.append(CoverSpec(f"w:{m.window.id}", m.window.rect, style, text, clickable))
        strip = title_strip(m.window)
        if strip is not None:
            covers.append(CoverSpec(f"w:{m.window.id}:title", strip, "opaque", "", clickable))
    return CoverPlan(covers, matches)


def cover_state(plan: CoverPlan, rules: Sequence[CustomerApp]) -> str:
    """What ``plan`` covers, for the status, the tray and the events: never "covered" with nothing drawn."""
    if plan.matches:
        return "covered"
    if plan.covers:
        return "screen"
    return "nothing_to_cover" if rules else "no_rules"


def unmatched_rules(plan: CoverPlan, rules: Sequence[CustomerApp]) -> list[str]:
    """Names of the rules that matched no open window (an admin's hint that a rule may be wrong)."""
    matched = set(plan.rules)
    return [r.name for r in rules if r.name not in matched]


def title_strip(window: Window) -> Rect | None:
    """The decorations above the client area (the title bar), when the backend reports them separately."""
    frame, rect = window.frame, window.rect
    if frame is None or frame.y >= rect.y:
        return None
    return Rect(frame.x, frame.y, frame.width, rect.y - frame.y)
