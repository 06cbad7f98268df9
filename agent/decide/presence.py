"""The presence stages (SPEC.md, "Agent behaviour: Presence"). Pure: idle samples and a monotonic ``now`` in,
stage decisions out; no OS calls, no clock reads.

    active --warn_after--> warn --protect_after--> protect --lock_after--> lock

- **warn**: a countdown to protect; any input (the idle counter drops) dismisses it.
- **protect**: every customer-data window is covered (the runtime's "away" cover reason).
- **lock**: the session is locked once per away period; the cover stays. An OS lock or an active screensaver
  counts as away (stage lock, nothing more to do).
- **Inhibitors** (``inhibit_lock_when``: "fullscreen", "call") may delay the lock by up to ``max_inhibit``;
  they never delay the cover — a video call is exactly when a family member may walk past.
- **Step away now** jumps to protect at once; the lock follows ``lock_after - protect_after`` later. Input
  after a short grace (the hotkey's own key release) ends it.
- **Covering impossible** (no window list, no cover helper): protect becomes lock, not delayed by inhibitors,
  because the lock is then the only protection left.
- **reveal = "click"**: after the worker returns, the cover stays until a click on it (:meth:`reveal`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from policy.model import Presence


class Stage(StrEnum):
    ACTIVE = "active"
    WARN = "warn"
    PROTECT = "protect"
    LOCK = "lock"


AWAY_STAGES = (Stage.PROTECT, Stage.LOCK)


@dataclass(frozen=True)
class PresenceInput:
    idle: float  # seconds since the last keyboard/mouse input (OS idle counter)
    locked: bool = False  # session locked or screensaver active
    inhibitors: frozenset[str] = frozenset()  # active situations, e.g. {"fullscreen"}
    can_cover: bool = True  # False: no window list or no cover helper -> lock instead of cover


@dataclass(frozen=True)
class PresenceDecision:
    stage: Stage
    previous: Stage
    cover: bool  # the "away" cover reason must be active
    lock_now: bool  # run the lock method now (at most once per away period)
    seconds_left: float | None  # warn: seconds until protect
    lock_inhibited_by: tuple[str, ...]  # inhibitors currently delaying the lock
    reason: Literal["away", "step_away"]  # what started this away period (for events)
    awaiting_reveal: bool  # reveal = "click": the worker is back, the cover waits for a click

    @property
    def changed(self) -> bool:
        return self.stage != self.previous


class PresenceMachine:
    """Holds what must persist between samples: step-away, lock requested, awaiting a reveal click."""

    def __init__(self, settings: Presence, step_away_grace: float = 1.0) -> None:
        self.settings = settings
        self.step_away_grace = step_away_grace
        self._stage = Stage.ACTIVE
        self._step_at: float | None = None
        self._lock_requested = False
        self._awaiting_reveal = False
        self._reason: Literal["away", "step_away"] = "away"

    @property
    def stage(self) -> Stage:
        return self._stage

    def reconfigure(self, settings: Presence) -> None:
        """A new policy: keep the state, use the new thresholds from the next sample."""
        self.settings = settings

    def step_away(self, now: float) -> None:
        if self._step_at is None and self._stage not in AWAY_STAGES:
            self._reason = "step_away"
        self._step_at = now

    def reveal(self) -> None:
        """The worker clicked a cover (reveal = "click")."""
        self._awaiting_reveal = False

    def update(self, sample: PresenceInput, now: float) -> PresenceDecision:
        s = self.settings
        previous = self._stage
        away_for = sample.idle
        if self._step_at is not None:
            since = max(0.0, now - self._step_at)
            if since > self.step_away_grace and sample.idle < since - self.step_away_grace:
                self._step_at = None  # input after the step-away: the worker is back
            else:
                away_for = max(away_for, s.protect_after + since)

        lock_now = False
        inhibited: tuple[str, ...] = ()
        seconds_left: float | None = None
        if sample.locked:
            stage = Stage.LOCK
            self._lock_requested = True  # already locked by the OS or the worker: nothing to do
        elif away_for >= s.protect_after and not sample.can_cover:
            stage = Stage.LOCK
            lock_now = not self._lock_requested
            self._lock_requested = True
        elif away_for >= s.lock_after:
            active = tuple(sorted(set(sample.inhibitors) & set(s.inhibit_lock_when)))
            if active and not self._lock_requested and away_for < s.lock_after + s.max_inhibit:
                stage = Stage.PROTECT
                inhibited = active
            else:
                stage = Stage.LOCK
                lock_now = not self._lock_requested
                self._lock_requested = True
        elif away_for >= s.protect_after:
            stage = Stage.PROTECT
        elif away_for >= s.warn_after:
            stage = Stage.WARN
            seconds_left = max(0.0, s.protect_after - away_for)
        else:
            stage = Stage.ACTIVE

        if stage in AWAY_STAGES:
            if s.reveal == "click":
                self._awaiting_reveal = True
        else:
            self._lock_requested = False
            if self._step_at is None and not self._awaiting_reveal:
                self._reason = "away"
        self._stage = stage
        cover = stage in AWAY_STAGES or self._awaiting_reveal
        return PresenceDecision(
            stage=stage,
            previous=previous,
            cover=cover,
            lock_now=lock_now,
            seconds_left=seconds_left,
            lock_inhibited_by=inhibited,
            reason=self._reason,
            awaiting_reveal=self._awaiting_reveal and stage not in AWAY_STAGES,
        )
