"""The presence stage machine (pure; thresholds from tests/harness/fakes.py: warn 60 s, protect 90 s, lock 300 s)."""

from __future__ import annotations

from agent.decide.presence import PresenceInput, PresenceMachine, Stage
from tests.harness.fakes import policy


def machine(reveal: str = "activity") -> PresenceMachine:
    return PresenceMachine(policy(reveal=reveal).presence)


def test_stages_follow_idle_time() -> None:
    m = machine()
    seen = [m.update(PresenceInput(idle=t), now=t).stage for t in (0, 59, 60, 89, 90, 299, 300)]
    assert seen == [
        Stage.ACTIVE,
        Stage.ACTIVE,
        Stage.WARN,
        Stage.WARN,
        Stage.PROTECT,
        Stage.PROTECT,
        Stage.LOCK,
    ]


def test_warn_counts_down_and_input_dismisses_it() -> None:
    m = machine()
    d = m.update(PresenceInput(idle=75), now=75)
    assert d.stage is Stage.WARN and d.seconds_left == 15 and not d.cover
    d = m.update(PresenceInput(idle=0.2), now=76)
    assert d.stage is Stage.ACTIVE and d.changed and not d.cover


def test_lock_runs_once_per_away_period() -> None:
    m = machine()
    locks = [m.update(PresenceInput(idle=t), now=t).lock_now for t in range(295, 400, 5)]
    assert locks.count(True) == 1
    m.update(PresenceInput(idle=0), now=401)  # back
    assert m.update(PresenceInput(idle=301), now=702).lock_now


def test_inhibitor_delays_lock_but_not_cover() -> None:
    m = machine()
    call = frozenset({"call"})
    d = m.update(PresenceInput(idle=90, inhibitors=call), now=90)
    assert d.stage is Stage.PROTECT and d.cover  # the cover is never delayed
    d = m.update(PresenceInput(idle=400, inhibitors=call), now=400)
    assert d.stage is Stage.PROTECT and d.cover and not d.lock_now and d.lock_inhibited_by == ("call",)
    d = m.update(PresenceInput(idle=401), now=401)  # the call ended
    assert d.stage is Stage.LOCK and d.lock_now


def test_inhibitor_is_bounded_by_max_inhibit() -> None:
    m = machine()
    d = m.update(PresenceInput(idle=300 + 600, inhibitors=frozenset({"fullscreen"})), now=900)
    assert d.stage is Stage.LOCK and d.lock_now


def test_unknown_inhibitor_does_not_delay() -> None:
    d = machine().update(PresenceInput(idle=300, inhibitors=frozenset({"music"})), now=300)
    assert d.lock_now


def test_os_lock_counts_as_away_without_locking_again() -> None:
    m = machine()
    d = m.update(PresenceInput(idle=5, locked=True), now=5)
    assert d.stage is Stage.LOCK and d.cover and not d.lock_now
    assert not m.update(PresenceInput(idle=400, locked=True), now=400).lock_now


def test_no_cover_possible_locks_at_protect_even_when_inhibited() -> None:
    m = machine()
    d = m.update(PresenceInput(idle=90, can_cover=False, inhibitors=frozenset({"call"})), now=90)
    assert d.stage is Stage.LOCK and d.lock_now


def test_step_away_protects_now_then_locks_later_and_input_ends_it() -> None:
    m = machine()
    m.step_away(now=100)
    d = m.update(PresenceInput(idle=0.1), now=100.1)  # the hotkey's own key release is within the grace
    assert d.stage is Stage.PROTECT and d.cover and d.reason == "step_away"
    d = m.update(PresenceInput(idle=210), now=100 + 210)  # protect_after + 210 >= lock_after
    assert d.stage is Stage.LOCK and d.lock_now
    d = m.update(PresenceInput(idle=0.5), now=400)
    assert d.stage is Stage.ACTIVE and not d.cover and d.reason == "away"


def test_reveal_click_keeps_cover_until_clicked() -> None:
    m = machine(reveal="click")
    assert m.update(PresenceInput(idle=95), now=95).cover
    d = m.update(PresenceInput(idle=0), now=96)
    assert d.stage is Stage.ACTIVE and d.cover and d.awaiting_reveal
    m.reveal()
    d = m.update(PresenceInput(idle=1), now=97)
    assert not d.cover and not d.awaiting_reveal
