"""Pure server-side decisions: device status (silence) and sequence gaps. No I/O, ``now`` passed in."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def device_status(
    *,
    last_seen_ms: int | None,
    stopped: bool,
    state: str | None,
    heartbeat_s: float | None,
    now_ms: int,
    silence_factor: float = 3.0,
    min_silence_s: float = 60.0,
) -> str:
    """never_seen | stopped | silent | online | away | non_compliant.

    A device is "silent" when it has not checked in or sent events for ``silence_factor`` heartbeat intervals
    and its last word was not a clean-stop notice (SPEC.md, issue 4: silence detection).
    """
    if last_seen_ms is None:
        return "never_seen"
    if stopped:
        return "stopped"
    interval = max(heartbeat_s or 300.0, 1.0) * silence_factor
    if now_ms - last_seen_ms > max(interval, min_silence_s) * 1000:
        return "silent"
    return state if state in ("online", "away", "non_compliant") else "online"


@dataclass(frozen=True)
class Gap:
    first: int
    last: int


def new_gaps(previous_max: int, accepted: Iterable[int]) -> tuple[list[Gap], int]:
    """Gaps opened by newly accepted sequences above ``previous_max``; returns (gaps, new max)."""
    above = sorted({s for s in accepted if s > previous_max})
    gaps: list[Gap] = []
    expected = previous_max + 1
    for seq in above:
        if seq > expected:
            gaps.append(Gap(expected, seq - 1))
        expected = seq + 1
    return gaps, max(previous_max, above[-1]) if above else previous_max


def fill_gaps(gaps: Sequence[Gap], late: Iterable[int]) -> list[Gap]:
    """Remove late-arriving sequences from recorded gaps (a gap may split in two)."""
    result = list(gaps)
    for seq in sorted(set(late)):
        updated: list[Gap] = []
        for gap in result:
            if gap.first <= seq <= gap.last:
                if gap.first < seq:
                    updated.append(Gap(gap.first, seq - 1))
                if seq < gap.last:
                    updated.append(Gap(seq + 1, gap.last))
            else:
                updated.append(gap)
        result = updated
    return result
