"""Runtime over the scripted fake desktop: stages, covers, reasons, lock verification, events, status."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from agent.app import build_runtime
from agent.config import AgentConfig
from agent.i18n import Translator
from agent.platform.base import Capabilities, Monitor, PlatformError, Rect
from agent.platform.fake import FakeDesktop
from agent.report.stream import EventStream, Kind
from agent.runtime import Runtime
from core.clock import FakeClock, SystemClock
from policy.load import load_policy
from policy.model import Policy
from tests.harness.fakes import POLICY, RecordingSink, policy, window

POLICY_TEXT = POLICY.format(cover="blur", reveal="activity")

CRM = window(1, "Acme | Salesforce", "chrome", Rect(100, 100, 800, 600))
NOTES = window(2, "notes.txt", "gedit", Rect(950, 100, 400, 300))


@pytest.fixture
def parts(tmp_path: Path):
    desk = FakeDesktop([CRM, NOTES])
    sink = RecordingSink()
    stream = EventStream()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path),
        policy(),
        desk,
        stream,
        FakeClock(),
        overlay=sink,
        translator=Translator("en"),
        lock_verify_timeout=2.0,
    )
    return desk, sink, stream, rt


def kinds(stream: EventStream, kind: Kind) -> list[dict]:
    return [dict(e.data) for e in stream.recent() if e.kind is kind]


def test_idle_covers_only_customer_windows_and_input_uncovers(parts) -> None:
    desk, sink, stream, rt = parts
    desk.set_idle(10)
    rt.protection.step()
    assert sink.current == []
    desk.set_idle(95)
    rt.protection.step()
    assert [(c.key, c.rect, c.style) for c in sink.current] == [("w:1", CRM.rect, "blur")]
    assert rt.status()["covered"] == {"rules": ["crm"], "count": 1}
    assert kinds(stream, Kind.PROTECTION_APPLIED) == [{"reason": "away", "rules": ["crm"], "count": 1}]
    desk.input()
    rt.protection.step()
    assert sink.current == []
    assert kinds(stream, Kind.PROTECTION_REMOVED)[0]["reason"] == "away"
    stages = [e["stage"] for e in kinds(stream, Kind.PRESENCE_STAGE)]
    assert stages == ["protect", "active"]


def test_cover_follows_moves_and_closing_removes_it(parts) -> None:
    desk, sink, _, rt = parts
    desk.set_idle(95)
    rt.protection.step()
    desk.move_window(1, Rect(300, 200, 800, 600))
    rt.protection.step()
    assert sink.current[0].rect == Rect(300, 200, 800, 600)
    desk.remove_window(1)
    rt.protection.step()
    assert sink.current == []


def test_warn_shows_countdown_then_clears(parts) -> None:
    desk, sink, _, rt = parts
    desk.set_idle(70)
    rt.protection.step()
    assert sink.countdowns[-1][0] == 20.0 and "20" in sink.countdowns[-1][1]
    desk.input()
    rt.protection.step()
    assert sink.countdowns[-1] == (None, "")


def test_other_reasons_cover_opaque_with_their_label(parts) -> None:
    _, sink, stream, rt = parts
    rt.set_cover_reason("share", True, "share.cover")
    rt.protection.step()
    assert [c.style for c in sink.current] == ["opaque"]
    assert sink.current[0].label == Translator("en")("share.cover") + "\n" + Translator("ja")("share.cover")
    assert rt.status()["cover_reasons"] == ["share"]
    rt.set_cover_reason("share", False)
    rt.protection.step()
    assert sink.current == []
    assert [e["reason"] for e in kinds(stream, Kind.PROTECTION_REMOVED)] == ["share"]


def test_lock_once_and_verified(parts) -> None:
    desk, _, stream, rt = parts
    for idle in (300, 301, 302):
        desk.set_idle(idle)
        rt.protection.step()
        rt.protection.session_lock.join()
    assert desk.lock_calls == 1
    assert kinds(stream, Kind.SESSION_LOCKED) == [{"method": "fake"}]
    assert not rt.status()["lock_failed"]


def test_failed_lock_covers_every_monitor(tmp_path: Path) -> None:
    monitors = [Monitor(Rect(0, 0, 1920, 1080), True), Monitor(Rect(1920, 0, 1280, 1024))]
    desk = FakeDesktop([CRM], monitors=monitors, lock_works=False)
    sink = RecordingSink()
    stream = EventStream()
    rt = build_runtime(AgentConfig(state_dir=tmp_path), policy(), desk, stream, FakeClock(), overlay=sink)
    desk.set_idle(300)
    rt.protection.step()
    rt.protection.session_lock.join()
    rt.protection.step()
    assert [c.rect for c in sink.current] == [m.rect for m in monitors]
    assert kinds(stream, Kind.LOCK_FAILED) == [{"method": "fake", "reason": "not_locked"}]
    assert rt.status()["lock_failed"]
    desk.input()
    rt.protection.step()
    assert sink.current == []


def test_lock_error_is_lock_failed(parts) -> None:
    desk, sink, stream, rt = parts
    desk.lock_raises = "no locker"
    desk.set_idle(300)
    rt.protection.step()
    rt.protection.session_lock.join()
    rt.protection.step()
    assert kinds(stream, Kind.LOCK_FAILED)[0]["reason"] == "lock_error"
    assert {c.key for c in sink.current} == {"screen:0"}


def test_call_inhibitor_delays_lock_not_cover(parts) -> None:
    desk, sink, _, rt = parts
    rt.set_inhibitor("call", True)
    desk.set_idle(310)
    rt.protection.step()
    rt.protection.session_lock.join()
    assert desk.lock_calls == 0
    assert [c.key for c in sink.current] == ["w:1"]
    assert rt.status()["presence"]["lock_inhibited_by"] == ["call"]
    rt.set_inhibitor("call", False)
    rt.protection.step()
    rt.protection.session_lock.join()
    assert desk.lock_calls == 1


def test_fullscreen_window_inhibits_lock(parts) -> None:
    desk, sink, _, rt = parts
    desk.add_window(window(3, "Movie", "vlc", Rect(0, 0, 1920, 1080), fullscreen=True))
    desk.set_idle(95)
    rt.protection.step()  # protect: reads the window list
    desk.set_idle(310)
    rt.protection.step()
    rt.protection.session_lock.join()
    assert desk.lock_calls == 0 and sink.current


def test_no_window_list_locks_at_protect_and_reports_degraded(tmp_path: Path) -> None:
    caps = Capabilities(backend="wayland", idle=True, lock=True, lock_state=True, lock_method="loginctl")
    desk = FakeDesktop([CRM], capabilities=caps)
    stream = EventStream()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(), desk, stream, FakeClock(), overlay=RecordingSink()
    )
    rt.start()
    try:
        degraded = {e["capability"] for e in kinds(stream, Kind.CAPABILITY_DEGRADED)}
        assert {"window_list", "cover"} <= degraded
    finally:
        rt.stop()
    desk.set_idle(95)
    rt.protection.step()
    rt.protection.session_lock.join()
    assert desk.lock_calls == 1


def test_helper_given_up_means_lock(parts) -> None:
    desk, sink, _, rt = parts
    sink.is_available = False
    desk.set_idle(95)
    rt.protection.step()
    rt.protection.session_lock.join()
    assert desk.lock_calls == 1


def test_step_away_and_click_reveal(tmp_path: Path) -> None:
    desk = FakeDesktop([CRM])
    sink = RecordingSink()
    clock = FakeClock()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(reveal="click"), desk, EventStream(), clock, overlay=sink
    )
    rt.step_away()
    rt.protection.step()
    assert [c.clickable for c in sink.current] == [True]
    assert "step_away" in rt.status()["cover_reasons"]
    clock.advance(5)
    desk.set_idle(0.5)
    rt.protection.step()
    assert sink.current, "reveal = click: input alone does not uncover"
    rt.protection.reveal("w:1")
    rt.protection.step()
    assert sink.current == []


def test_events_never_carry_titles(parts) -> None:
    desk, _, stream, rt = parts
    rt.set_cover_reason("posture", True)
    desk.set_idle(300)
    rt.protection.step()
    rt.protection.session_lock.join()
    text = repr([e.data for e in stream.recent()])
    assert "Salesforce" not in text and "Acme" not in text and "notes.txt" not in text


def test_crashing_worker_is_restarted(parts) -> None:
    _, _, _, rt = parts
    runs: list[int] = []
    done = threading.Event()

    def worker(stop: threading.Event) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        done.set()
        stop.wait()

    rt._supervise_delay = 0.0
    rt.add_worker("flaky", worker)
    rt.start()
    try:
        assert done.wait(10)
    finally:
        rt.stop()
    assert len(runs) == 3 and rt.status()["restarts"]["flaky"] == 2
    assert "worker.flaky" in rt.status()["degraded"]


def test_policy_provider_is_reread(tmp_path: Path) -> None:
    current = {"p": None}
    desk = FakeDesktop([CRM])
    sink = RecordingSink()
    clock = FakeClock()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), lambda: current["p"], desk, EventStream(), clock, overlay=sink
    )
    desk.set_idle(95)
    rt.protection.step()
    assert sink.current == []  # no policy: default presence (protect after 5 min), no customer apps
    current["p"] = policy()
    clock.advance(5)
    rt.protection.step()
    assert [c.key for c in sink.current] == ["w:1"]
    assert rt.status()["policy"] == {"id": "test", "version": 1}
    current["p"] = None  # the store lost it: keep the last-known-good policy
    clock.advance(5)
    rt.protection.step()
    assert [c.key for c in sink.current] == ["w:1"]


def test_lock_before_sleep(tmp_path: Path) -> None:
    desk = FakeDesktop([CRM])
    stream = EventStream()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(), desk, stream, FakeClock(), overlay=RecordingSink()
    )
    rt.start()
    try:
        desk.sleep_now()
    finally:
        rt.stop()
    assert desk.lock_calls == 1
    assert kinds(stream, Kind.SESSION_LOCKED) == [{"method": "fake"}]


def test_control_commands(parts) -> None:
    rt = parts[3]
    assert rt.handle_control({"cmd": "step_away"}) == {"ok": True}
    rt.protection.step()
    reply = rt.handle_control({"cmd": "status"})
    assert reply["ok"] and reply["status"]["covered"]["rules"] == ["crm"]
    assert reply["status"]["presence"]["stage"] == "protect"
    assert rt.handle_control({"cmd": "reboot"})["ok"] is False


def test_title_bar_outside_the_client_area_is_covered_too(tmp_path: Path) -> None:
    framed = window(
        5, "顧客台帳 - 山田 太郎", "excel", Rect(100, 130, 600, 400), frame=Rect(99, 100, 602, 431)
    )
    desk = FakeDesktop([framed])
    sink = RecordingSink()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(), desk, EventStream(), FakeClock(), overlay=sink
    )
    desk.set_idle(95)
    rt.protection.step()
    assert [(c.key, c.rect) for c in sink.current] == [
        ("w:5", Rect(100, 130, 600, 400)),
        ("w:5:title", Rect(99, 100, 602, 30)),
    ]
    assert rt.status()["covered"] == {"rules": ["ledger"], "count": 1}


def test_every_event_passes_the_report_allow_list_unredacted(tmp_path: Path) -> None:
    from agent.report.events import Context, filter_data

    monitors = [Monitor(Rect(0, 0, 1920, 1080), True)]
    desk = FakeDesktop([CRM, NOTES], monitors=monitors, lock_works=False)
    stream = EventStream()
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(), desk, stream, FakeClock(), overlay=RecordingSink()
    )
    rt.start()
    try:
        rt.set_cover_reason("share", True, "share.cover")
        desk.set_idle(70)
        rt.protection.step()
        desk.set_idle(300)
        rt.protection.step()
        rt.protection.session_lock.join()
        rt.protection.step()
        desk.sleep_now()
        desk.input()
        rt.set_cover_reason("share", False)
        rt.protection.step()
    finally:
        rt.stop()
    ctx = Context(rule_names=frozenset({"crm", "ledger"}))
    seen = set()
    for event in stream.recent():
        _, redacted = filter_data(event.kind, event.data, ctx)
        assert redacted == [], (event.kind, dict(event.data))
        seen.add(event.kind)
    assert {Kind.PRESENCE_STAGE, Kind.PROTECTION_APPLIED, Kind.PROTECTION_REMOVED, Kind.LOCK_FAILED} <= seen


def test_pause_holds_away_stages_within_the_policy_maximum(tmp_path: Path) -> None:
    from dataclasses import replace

    base = policy()
    allowed = replace(base, worker=replace(base.worker, allow_pause=True, pause_max=600.0))
    desk = FakeDesktop([CRM])
    sink = RecordingSink()
    stream = EventStream()
    clock = FakeClock()
    rt = build_runtime(AgentConfig(state_dir=tmp_path), allowed, desk, stream, clock, overlay=sink)
    assert rt.pause(60) == 10.0  # capped at pause_max (10 min)
    assert rt.status()["paused_until"] is not None
    desk.set_idle(95)
    rt.protection.step()
    assert sink.current == []  # paused: idle does not cover
    rt.set_cover_reason("share", True)
    rt.protection.step()
    assert [c.style for c in sink.current] == ["opaque"]  # a share still covers during a pause
    rt.set_cover_reason("share", False)
    clock.advance(601)
    rt.protection.step()  # the pause ran out: away protection is back, and it is reported
    assert [e.kind for e in stream.recent()].count(Kind.PROTECTION_RESUMED) == 1
    assert rt.status()["paused_until"] is None
    assert [c.style for c in sink.current] == ["blur"]


def test_pause_refused_when_the_policy_does_not_allow_it(parts) -> None:
    desk, sink, _, rt = parts
    assert rt.pause(5) == 0.0
    desk.set_idle(95)
    rt.protection.step()
    assert len(sink.current) == 1


# ---- issue 11: honest state, fail closed, covers under the lock screen ----------------------------------
class FailingDesktop(FakeDesktop):
    """A fake desktop whose idle counter or window list can be made to fail."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.idle_fails = False
        self.windows_fail = False

    def idle_seconds(self) -> float:
        if self.idle_fails:
            raise PlatformError("idle counter broke")
        return super().idle_seconds()

    def windows(self):
        if self.windows_fail:
            raise PlatformError("window list broke")
        return super().windows()


def _runtime(tmp_path: Path, desk: FakeDesktop, clock: FakeClock, sink=None, stream=None):
    return build_runtime(
        AgentConfig(state_dir=tmp_path),
        policy(),
        desk,
        stream or EventStream(),
        clock,
        overlay=sink or RecordingSink(),
        translator=Translator("en"),
        lock_verify_timeout=2.0,
    )


def test_idle_counter_error_counts_as_away_on_the_policy_clock(tmp_path: Path) -> None:
    desk, clock, sink, stream = FailingDesktop([CRM]), FakeClock(), RecordingSink(), EventStream()
    rt = _runtime(tmp_path, desk, clock, sink, stream)
    desk.set_idle(5)
    rt.protection.step()
    desk.idle_fails = True
    clock.advance(30)
    rt.protection.step()
    assert rt.status()["presence"]["stage"] == "active" and sink.current == []  # 35 s: still before warn
    clock.advance(60)  # 95 s since the last input the counter reported: protect (policy: 90 s)
    rt.protection.step()
    assert [c.key for c in sink.current] == ["w:1"]
    clock.advance(300)  # lock_after
    rt.protection.step()
    rt.protection.session_lock.join()
    assert desk.lock_calls == 1
    degraded = kinds(stream, Kind.CAPABILITY_DEGRADED)
    assert {"capability": "idle", "reason": "query_failed"} in degraded


def test_window_list_error_keeps_covers_then_covers_the_whole_screen(tmp_path: Path) -> None:
    from agent.protection import WINDOW_LIST_GRACE

    desk, clock, sink, stream = FailingDesktop([CRM, NOTES]), FakeClock(), RecordingSink(), EventStream()
    rt = _runtime(tmp_path, desk, clock, sink, stream)
    desk.set_idle(95)
    rt.protection.step()
    assert [c.key for c in sink.current] == ["w:1"]
    desk.windows_fail = True
    clock.advance(0.5)
    rt.protection.step()
    assert [c.key for c in sink.current] == ["w:1"]  # the last list's covers stay
    clock.advance(WINDOW_LIST_GRACE)
    rt.protection.step()
    assert [c.key for c in sink.current] == ["screen:0"]
    assert rt.status()["cover_state"]["state"] == "screen"
    assert {"capability": "window_list", "reason": "query_failed"} in kinds(stream, Kind.CAPABILITY_DEGRADED)
    desk.windows_fail = False
    rt.protection.step()
    assert [c.key for c in sink.current] == ["w:1"]


def test_a_reason_that_matches_nothing_is_not_announced_as_covered(tmp_path: Path) -> None:
    desk, clock, sink, stream = FakeDesktop([NOTES]), FakeClock(), RecordingSink(), EventStream()
    rt = _runtime(tmp_path, desk, clock, sink, stream)
    desk.set_idle(95)
    rt.protection.step()
    assert sink.current == []
    assert kinds(stream, Kind.PROTECTION_APPLIED) == []
    state = rt.status()["cover_state"]
    assert state["state"] == "nothing_to_cover" and state["unmatched_rules"] == ["crm", "ledger"]
    desk.add_window(CRM)
    rt.protection.step()
    assert kinds(stream, Kind.PROTECTION_APPLIED) == [{"reason": "away", "rules": ["crm"], "count": 1}]
    assert rt.status()["cover_state"]["state"] == "covered"
    desk.input()
    rt.protection.step()
    assert kinds(stream, Kind.PROTECTION_REMOVED) == [{"reason": "away", "rules": [], "count": 0}]


def test_no_event_before_the_helper_has_drawn_the_cover(tmp_path: Path) -> None:
    class SlowSink(RecordingSink):
        drawn: ClassVar[list[str]] = []

        def status(self) -> dict:
            return {"available": True, "shown": list(self.drawn)}

    desk, clock, sink, stream = FakeDesktop([CRM]), FakeClock(), SlowSink(), EventStream()
    rt = _runtime(tmp_path, desk, clock, sink, stream)
    desk.set_idle(95)
    rt.protection.step()
    assert [c.key for c in sink.current] == ["w:1"] and kinds(stream, Kind.PROTECTION_APPLIED) == []
    assert rt.status()["cover_state"]["drawn"] is False
    assert rt.status()["cover_state"]["state"] == "not_drawn"  # never "covered" before it is on screen
    sink.drawn = ["w:1"]
    rt.protection.step()
    assert len(kinds(stream, Kind.PROTECTION_APPLIED)) == 1
    assert rt.status()["cover_state"]["state"] == "covered" and rt.status()["cover_state"]["drawn"] is True


def test_lock_stage_stops_raising_covers_and_a_locked_session_draws_none(tmp_path: Path) -> None:
    desk, clock, sink = FakeDesktop([CRM]), FakeClock(), RecordingSink()
    rt = _runtime(tmp_path, desk, clock, sink)
    desk.set_idle(95)
    rt.protection.step()
    assert sink.on_top[-1] is True and [c.key for c in sink.current] == ["w:1"]
    desk.set_idle(300)
    rt.protection.step()
    assert sink.on_top[-1] is False  # the locker must map above the covers
    rt.protection.session_lock.join()
    rt.protection.step()
    assert desk.locked and sink.current == []
    assert rt.status()["cover_state"]["state"] == "locked"
    desk.unlock()
    rt.protection.step()
    assert sink.current == [] and rt.status()["presence"]["stage"] == "active"


def test_lock_that_does_not_engage_is_lock_failed_with_whole_screen_on_top(tmp_path: Path) -> None:
    desk, clock, sink, stream = (
        FakeDesktop([CRM], lock_works=False),
        FakeClock(),
        RecordingSink(),
        EventStream(),
    )
    rt = _runtime(tmp_path, desk, clock, sink, stream)
    desk.set_idle(300)
    rt.protection.step()
    rt.protection.step()
    rt.protection.session_lock.join()
    rt.protection.step()
    assert kinds(stream, Kind.LOCK_FAILED) and not kinds(stream, Kind.SESSION_LOCKED)
    assert [c.key for c in sink.current] == ["screen:0"] and sink.on_top[-1] is True


class PushingDesktop(FakeDesktop):
    """A fake desktop that pushes its lock-state changes, like the X11 backend's screensaver watch
    (``watch_lock_state``); ``interval``: how often the rest of the lock state must still be asked."""

    def __init__(self, *args: object, interval: float | None = None, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.interval = interval
        self.on_change: Callable[[], None] | None = None
        self.lock_state_pushed = True

    def watch_lock_state(self, on_change: Callable[[], None]) -> float | None:
        self.on_change = on_change
        return self.interval


def pushing_runtime(
    tmp_path: Path, desk: FakeDesktop, view: Policy | Callable[[], Policy] | None = None
) -> Runtime:
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path),
        view or policy(),
        desk,
        EventStream(),
        FakeClock(),
        overlay=RecordingSink(),
        translator=Translator("en"),
        idle_tick=1.0,
    )
    rt.protection.start()
    return rt


def test_the_idle_loop_waits_for_the_next_threshold_when_the_lock_state_is_pushed(tmp_path: Path) -> None:
    desk = PushingDesktop([CRM])
    rt = pushing_runtime(tmp_path, desk)
    assert desk.on_change is not None
    desk.set_idle(10)
    assert rt.protection.step() == pytest.approx(50.0)  # warn_after = 60 s
    desk.set_idle(59.5)
    assert rt.protection.step() == pytest.approx(0.5)
    desk.set_idle(70)  # warn: the countdown ticks
    assert rt.protection.step() == rt.protection.tick
    desk.input()
    assert rt.protection.step() == pytest.approx(60.0)
    # A pushed change wakes the loop; the next step sees it.
    rt.protection.wake.clear()
    desk.locked = True
    desk.on_change()
    assert rt.protection.wake.is_set()
    rt.protection.step()
    assert rt.status()["presence"]["stage"] == "lock"
    # The watch died: the lock state is asked every idle_tick again.
    desk.locked = False
    desk.input()
    desk.lock_state_pushed = False
    assert rt.protection.step() == pytest.approx(1.0)


def test_lock_state_not_pushed_is_asked_every_idle_tick_or_at_the_desktops_interval(tmp_path: Path) -> None:
    plain = pushing_runtime(tmp_path / "a", FakeDesktop([CRM]))
    FakeDesktop.set_idle(plain.protection.desktop, 10)  # type: ignore[arg-type]
    assert plain.protection.step() == pytest.approx(1.0)  # no hook: as before, once a second
    logind = pushing_runtime(tmp_path / "b", PushingDesktop([CRM], interval=2.0))
    assert logind.protection.step() == pytest.approx(2.0)  # D-Bus answers, refreshed every 2 s


def test_a_pause_and_a_new_policy_are_deadlines_of_the_idle_loop(tmp_path: Path) -> None:
    desk = PushingDesktop([CRM])
    pausing = load_policy(
        POLICY_TEXT.replace(
            "[presence]", '[worker]\nallow_pause = true\npause_max = "15m"\n\n[presence]'
        ).encode(),
        "p.toml",
    )
    current: list[Policy] = [pausing]
    rt = pushing_runtime(tmp_path, desk, lambda: current[0])
    desk.set_idle(10)
    assert rt.pause(0.5) == pytest.approx(0.5)
    assert rt.protection.step() == pytest.approx(
        30.0
    )  # the pause ends before warn_after (60 s, idle held at 0)
    rt.resume()
    rt.protection.wake.clear()
    current[0] = load_policy(
        POLICY_TEXT.replace('warn_after = "60s"', 'warn_after = "20s"').encode(), "q.toml"
    )
    rt.protection.policy()
    assert rt.protection.wake.is_set()  # thresholds changed: the loop recomputes its deadline
    assert rt.protection.step() == pytest.approx(10.0)
    rt.protection.wake.clear()
    current[0] = load_policy(
        POLICY_TEXT.replace('warn_after = "60s"', 'warn_after = "20s"').encode(), "r.toml"
    )
    rt.protection.policy()
    assert not rt.protection.wake.is_set()  # another policy, the same thresholds: no extra round


def test_a_cover_reason_set_during_a_step_cuts_the_long_wait_short(tmp_path: Path) -> None:
    covered = threading.Event()

    class Sink(RecordingSink):
        def show(self, covers, on_top: bool = True) -> None:  # type: ignore[no-untyped-def]
            super().show(covers, on_top)
            if covers:
                covered.set()

    rt_box: list[Runtime] = []

    class SharingDuringStep(PushingDesktop):
        calls = 0

        def idle_seconds(self) -> float:
            SharingDuringStep.calls += 1
            if SharingDuringStep.calls == 1:
                rt_box[0].set_cover_reason("share", True, "share.cover")  # e.g. the share guard's thread
            return super().idle_seconds()

    desk = SharingDuringStep([CRM])
    rt = build_runtime(
        AgentConfig(state_dir=tmp_path), policy(), desk, EventStream(), SystemClock(), overlay=Sink(),
        translator=Translator("en"),
    )  # fmt: skip
    rt_box.append(rt)
    stop = threading.Event()
    rt.protection.start()
    thread = threading.Thread(target=rt.protection.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # Without the wake-up the loop would sleep until warn_after (60 s) before covering.
        assert covered.wait(10), "the share reason set during the first step was not acted on"
    finally:
        stop.set()
        rt.protection.stop()
        thread.join(5)
