"""The confirmation window (agent/onlooker/confirm.py): pure, counts and times in; no clock, no camera."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.onlooker.confirm import OnlookerMachine


def feed(machine: OnlookerMachine, frames: list[tuple[float, int]]) -> list[tuple[float, bool, bool]]:
    """(time, onlooker, changed) after each (time, faces) frame."""
    out = []
    for t, n in frames:
        d = machine.update(n, t)
        out.append((t, d.onlooker, d.changed))
    return out


def test_more_faces_than_allowed_count_only_after_the_confirmation_window() -> None:
    m = OnlookerMachine(allowed=1, confirm=0.3, clear_after=2.0)
    assert not m.update(1, 0.0).onlooker
    first = m.update(2, 1.0)
    assert not first.onlooker and first.pending  # seen once: being confirmed, look faster
    assert not m.update(2, 1.2).onlooker
    confirmed = m.update(2, 1.3)
    assert confirmed.onlooker and confirmed.changed and confirmed.most == 2
    assert not confirmed.pending
    assert m.update(2, 1.4).changed is False  # said once


def test_one_frame_with_a_false_face_never_confirms() -> None:
    m = OnlookerMachine(allowed=1, confirm=0.3, clear_after=2.0)
    frames = [(0.0, 2), (0.1, 1), (0.2, 2), (0.3, 1), (0.4, 2), (0.5, 1), (0.6, 2), (0.65, 1)]
    assert all(not onlooker for _, onlooker, _ in feed(m, frames))


def test_a_missed_frame_does_not_uncover_and_clearing_takes_clear_after() -> None:
    m = OnlookerMachine(allowed=1, confirm=0.0, clear_after=2.0)
    assert m.update(3, 0.0).onlooker  # confirm = 0: the first frame counts
    assert m.update(1, 0.5).onlooker  # missed once
    assert m.update(2, 1.0).onlooker  # seen again: the clearing window restarts
    assert m.update(1, 1.5).onlooker
    assert m.update(0, 3.0).onlooker  # 1.5 s of no onlooker: not yet
    cleared = m.update(1, 3.5)
    assert not cleared.onlooker and cleared.changed
    assert cleared.most == 3 and cleared.duration == pytest.approx(3.5)


def test_allowed_zero_counts_any_face_and_allowed_two_tolerates_two() -> None:
    none_allowed = OnlookerMachine(allowed=0, confirm=0.0, clear_after=0.0)
    assert none_allowed.update(1, 0.0).onlooker
    two_allowed = OnlookerMachine(allowed=2, confirm=0.0, clear_after=0.0)
    assert not two_allowed.update(2, 0.0).onlooker
    assert two_allowed.update(3, 0.1).onlooker


def test_reset_clears_a_confirmed_onlooker_once() -> None:
    m = OnlookerMachine(allowed=1, confirm=0.0, clear_after=5.0)
    assert m.reset() is None
    m.update(2, 0.0)
    cleared = m.reset()
    assert cleared is not None and cleared.changed and not cleared.onlooker and cleared.most == 2
    assert m.reset() is None and not m.onlooker


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        OnlookerMachine(allowed=-1, confirm=0.3, clear_after=1.0)


@given(
    st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(0, 4)), min_size=1, max_size=60),
    st.integers(0, 2),
    st.floats(0.0, 1.0),
    st.floats(0.0, 2.0),
)
def test_an_onlooker_is_confirmed_only_by_an_unbroken_run_of_the_confirmation_window(
    steps: list[tuple[float, int]], allowed: int, confirm: float, clear_after: float
) -> None:
    m = OnlookerMachine(allowed, confirm, clear_after)
    t = 0.0
    frames: list[tuple[float, int]] = []
    for dt, n in steps:
        t += dt
        frames.append((t, n))
        before = m.onlooker
        d = m.update(n, t)
        assert d.changed == (d.onlooker != before)
        over = n > allowed
        # The unbroken run of frames, ending with this one, that agree with this frame.
        run_start = t
        for ft, fn in reversed(frames):
            if (fn > allowed) != over:
                break
            run_start = ft
        window = confirm if over else clear_after
        if d.changed:
            assert d.onlooker == over and t - run_start >= window
        elif over != d.onlooker:
            assert t - run_start < window  # not yet long enough: still being confirmed
            assert d.pending
