"""Warn-then-block enforcement of posture findings (SPEC.md, "Policy": every check has a mode; [enforcement]).

Pure: findings + the policy's enforcement settings + ``now`` + the previous state in, the new state out. No OS,
no clock: the caller passes ``now`` (STYLE.md). The previous state carries, per check, since when it has been
failing, so that a "block" check first only warns for ``grace`` seconds and then blocks.

Per check, by mode and status:

=========  ======================  =================================================================
mode       status fail             status error
=========  ======================  =================================================================
off        nothing                 nothing
report     recorded (no UI)        recorded
warn       worker warned           warned if on_check_error = "block", else recorded
block      warned, then blocked    like fail if on_check_error = "block", else recorded
           after grace
=========  ======================  =================================================================

``pass`` and ``skip`` clear the check's failure clock: a check that recovers and fails again starts a fresh grace
period, so flapping cannot be used to dodge it, only to restart a full countdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

Action = Literal["none", "report", "warn", "block"]


class Finding(Protocol):
    """What enforcement needs of a check result (agent.posture.base.CheckResult satisfies it)."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def mode(self) -> str: ...

    @property
    def remediation_key(self) -> str | None: ...


@dataclass(frozen=True)
class EnforcementSettings:
    """The policy's ``[enforcement]`` values this decision needs (policy.model.Enforcement satisfies it too)."""

    grace: float = 600.0
    on_check_error: Literal["block", "allow"] = "allow"


class SettingsLike(Protocol):
    @property
    def grace(self) -> float: ...

    @property
    def on_check_error(self) -> str: ...


@dataclass(frozen=True)
class EnforcementState:
    """The decision: whether customer-data windows must be covered, and what to tell the worker."""

    block: bool = False
    warnings: tuple[
        str, ...
    ] = ()  # ids of checks the worker is warned about (not blocking yet, or mode warn)
    blocking: tuple[str, ...] = ()  # ids of checks that block now
    reported: tuple[str, ...] = ()  # ids of failing checks that are only recorded
    remediation: tuple[str, ...] = ()  # message keys to show, blocking checks first, no duplicates
    actions: Mapping[str, Action] = field(default_factory=dict)  # per check id
    failing_since: Mapping[str, datetime] = field(
        default_factory=dict
    )  # per check id; input of the next call
    block_at: datetime | None = None  # earliest moment a current warning turns into a block

    @property
    def message_key(self) -> str | None:
        """The first remediation message (the one the cover shows)."""
        return self.remediation[0] if self.remediation else None

    def same_decision(self, other: EnforcementState) -> bool:
        """Equal for the worker (ignores bookkeeping such as failing_since)."""
        return (self.block, self.warnings, self.blocking, self.remediation, self.block_at) == (
            other.block,
            other.warnings,
            other.blocking,
            other.remediation,
            other.block_at,
        )


def decide(
    findings: Sequence[Finding],
    settings: SettingsLike,
    now: datetime,
    previous: EnforcementState | None = None,
) -> EnforcementState:
    """Apply modes, grace and on_check_error to the latest findings."""
    before = previous.failing_since if previous is not None else {}
    grace = timedelta(seconds=max(0.0, float(settings.grace)))
    error_blocks = settings.on_check_error == "block"
    actions: dict[str, Action] = {}
    failing_since: dict[str, datetime] = {}
    warn_keys: list[str] = []
    block_keys: list[str] = []
    block_at: datetime | None = None
    for f in findings:
        if f.mode == "off" or f.status in ("pass", "skip"):
            actions[f.id] = "none"
            continue
        failing = f.status == "fail" or (f.status == "error" and error_blocks)
        if not failing or f.mode == "report":
            actions[f.id] = "report"
            continue
        # min(): if the wall clock stepped back, never push the end of a grace period into the future
        since = min(before.get(f.id, now), now)
        failing_since[f.id] = since
        if f.mode == "block" and now >= since + grace:
            actions[f.id] = "block"
            if f.remediation_key:
                block_keys.append(f.remediation_key)
        else:
            actions[f.id] = "warn"
            if f.remediation_key:
                warn_keys.append(f.remediation_key)
            if f.mode == "block":
                turn = since + grace
                block_at = turn if block_at is None else min(block_at, turn)
    remediation = tuple(dict.fromkeys([*block_keys, *warn_keys]))
    blocking = tuple(k for k, a in actions.items() if a == "block")
    return EnforcementState(
        block=bool(blocking),
        warnings=tuple(k for k, a in actions.items() if a == "warn"),
        blocking=blocking,
        reported=tuple(k for k, a in actions.items() if a == "report"),
        remediation=remediation,
        actions=actions,
        failing_since=failing_since,
        block_at=block_at,
    )
