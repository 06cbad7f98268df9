"""Warn-then-block enforcement (pure; agent/decide/enforcement.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agent.decide.enforcement import EnforcementSettings, EnforcementState, decide

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class F:
    id: str
    status: str
    mode: str
    remediation_key: str | None = "fix"


GRACE = EnforcementSettings(grace=600.0)


def test_block_check_warns_during_grace_then_blocks() -> None:
    f = [F("vpn", "fail", "block", "posture.remedy.vpn.connect")]
    s1 = decide(f, GRACE, T0)
    assert not s1.block and s1.warnings == ("vpn",) and s1.block_at == T0 + timedelta(seconds=600)
    assert s1.message_key == "posture.remedy.vpn.connect"
    s2 = decide(f, GRACE, T0 + timedelta(seconds=599), s1)
    assert not s2.block
    s3 = decide(f, GRACE, T0 + timedelta(seconds=600), s2)
    assert s3.block and s3.blocking == ("vpn",) and s3.warnings == ()
    assert s3.remediation == ("posture.remedy.vpn.connect",)


def test_zero_grace_blocks_at_once() -> None:
    s = decide([F("vpn", "fail", "block")], EnforcementSettings(grace=0), T0)
    assert s.block


def test_recovery_resets_the_grace_period() -> None:
    f = [F("vpn", "fail", "block")]
    s = decide(f, GRACE, T0)
    s = decide([F("vpn", "pass", "block")], GRACE, T0 + timedelta(seconds=300), s)
    assert s.failing_since == {}
    s = decide(f, GRACE, T0 + timedelta(seconds=700), s)
    assert not s.block and s.block_at == T0 + timedelta(seconds=1300)


def test_modes() -> None:
    findings = [
        F("a", "fail", "off"),
        F("b", "fail", "report"),
        F("c", "fail", "warn", "warn-key"),
        F("d", "pass", "block"),
    ]
    s = decide(findings, EnforcementSettings(grace=0), T0)
    assert s.actions == {"a": "none", "b": "report", "c": "warn", "d": "none"}
    assert not s.block and s.remediation == ("warn-key",) and s.reported == ("b",)


def test_on_check_error() -> None:
    err = [F("tls:x:443", "error", "block", "posture.remedy.check_error")]
    allow = decide(err, EnforcementSettings(grace=0, on_check_error="allow"), T0)
    assert not allow.block and allow.actions["tls:x:443"] == "report"
    block = decide(err, EnforcementSettings(grace=0, on_check_error="block"), T0)
    assert block.block and block.message_key == "posture.remedy.check_error"


def test_blocking_messages_come_before_warnings_without_duplicates() -> None:
    findings = [
        F("wifi", "fail", "warn", "w"),
        F("vpn", "fail", "block", "v"),
        F("vpn.dns", "fail", "block", "v"),
    ]
    s = decide(findings, EnforcementSettings(grace=0), T0)
    assert s.remediation == ("v", "w")


def test_wall_clock_stepping_back_cannot_extend_the_grace() -> None:
    f = [F("vpn", "fail", "block")]
    s = decide(f, GRACE, T0)
    s = decide(f, GRACE, T0 - timedelta(hours=1), s)
    assert s.failing_since["vpn"] == T0 - timedelta(hours=1)


@given(
    grace=st.floats(min_value=0, max_value=7200),
    steps=st.lists(
        st.tuples(st.sampled_from(["pass", "fail", "error", "skip"]), st.floats(0, 900)), max_size=30
    ),
)
def test_never_blocks_before_a_full_grace_of_continuous_failure(
    grace: float, steps: list[tuple[str, float]]
) -> None:
    settings = EnforcementSettings(grace=grace, on_check_error="block")
    state: EnforcementState | None = None
    now = T0
    failing_from: datetime | None = None
    for status, advance in steps:
        now += timedelta(seconds=advance)
        state = decide([F("vpn", status, "block")], settings, now, state)
        failing = status in ("fail", "error")
        failing_from = (failing_from or now) if failing else None
        if state.block:
            assert failing_from is not None and now - failing_from >= timedelta(seconds=grace)
        elif failing_from is not None:
            assert now - failing_from < timedelta(seconds=grace)
