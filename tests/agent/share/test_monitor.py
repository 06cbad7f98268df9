"""ShareMonitor over a scripted desktop and a FakeClock: events, cover reason, notice, debounce, unknown."""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any

import psutil
import pytest

from agent.platform.base import Rect, Window
from agent.report.stream import EventStream, Kind
from agent.share.detect import ShareState, detect
from agent.share.monitor import COVER_MESSAGE_KEY, ShareMonitor, ShareNotice
from agent.share.processes import PsutilProcessLister
from core.clock import FakeClock
from policy.model import Policy, ScreenShare, ShareSignature
from tests.harness.share_fixtures import ScriptedDesktop, ScriptedProcesses

monitor_module: Any = importlib.import_module("agent.share.monitor")

TOOLBAR = Window(
    id=5, title="as_toolbar", pid=4100, process_name="zoom", rect=Rect(560, 0, 640, 48), wm_class="zoom"
)
MEETING = Window(
    id=6,
    title="Zoom Meeting - 山田様 ご契約相談",
    pid=4100,
    process_name="zoom",
    rect=Rect(0, 0, 800, 600),
    wm_class="zoom",
)


def policy(protect: bool = True, extra: tuple[ShareSignature, ...] = ()) -> Policy:
    return Policy(schema=1, id="test", version=1, screen_share=ScreenShare(protect=protect, signatures=extra))


class Rig:
    def __init__(
        self, protect: bool = True, desktop: ScriptedDesktop | None = None, **kwargs: object
    ) -> None:
        self.clock = FakeClock()
        self.desktop = desktop or ScriptedDesktop(window_list=[MEETING])
        self.processes = ScriptedProcesses(["systemd", "Xorg", "zoom"])
        self.stream = EventStream()
        self.events = self.stream.subscribe()
        self.changes: list[ShareState] = []
        self.covers: list[tuple[str, bool, str | None]] = []
        self.notices: list[ShareNotice] = []
        self.selfchecks = 0
        self.monitor = ShareMonitor(
            policy(protect),
            self.desktop,
            self.clock,
            self.changes.append,
            self.stream,
            process_lister=self.processes,
            capture_probe=None,
            set_cover_reason=lambda reason, on, key: self.covers.append((reason, on, key)),
            notify=self.notices.append,
            selfcheck=self._selfcheck,
            os_family="linux",
            **kwargs,  # type: ignore[arg-type]
        )

    def _selfcheck(self) -> None:
        self.selfchecks += 1

    def poll(self, after: float = 0.2) -> ShareState:
        self.clock.advance(after)
        return self.monitor.poll_once()

    def drain(self) -> list[tuple[Kind, dict[str, object]]]:
        out = []
        while not self.events.empty():
            event = self.events.get_nowait()
            out.append((event.kind, dict(event.data)))
        return out


def test_share_start_and_end_reports_covers_and_notifies_once() -> None:
    rig = Rig()
    assert not rig.poll().active
    assert rig.changes == [ShareState(active=False)]
    assert rig.covers == [("share", False, None)]

    rig.desktop.window_list = [MEETING, TOOLBAR]
    state = rig.poll()
    assert state == ShareState(active=True, apps=("Zoom",))
    assert rig.covers[-1] == ("share", True, COVER_MESSAGE_KEY)
    assert rig.drain() == [(Kind.SHARE_STARTED, {"app": "Zoom"})]
    assert len(rig.notices) == 1
    assert rig.notices[0].apps == ("Zoom",)
    assert "Zoom" in rig.notices[0].text["en"] and "顧客情報" in rig.notices[0].text["ja"]

    # A recorder starts during the share: reported, but still one share and one notice.
    rig.processes.names = ["systemd", "zoom", "obs"]
    for _ in range(5):
        state = rig.poll()
    assert state.apps == ("Zoom", "OBS Studio")
    assert rig.drain() == [(Kind.SHARE_STARTED, {"app": "OBS Studio"})]
    assert len(rig.notices) == 1
    assert rig.covers.count(("share", True, COVER_MESSAGE_KEY)) == 1  # set once, not on every poll

    rig.processes.names = ["systemd", "zoom"]
    rig.desktop.window_list = [MEETING]
    rig.poll()  # within end_grace: still covered
    assert rig.monitor.state.active
    state = rig.poll()
    assert not state.active
    assert rig.covers[-1] == ("share", False, None)
    ended = rig.drain()
    assert {k for k, _ in ended} == {Kind.SHARE_ENDED}
    durations = {d["app"]: d["duration_s"] for _, d in ended}
    assert durations == {"Zoom": 1.4, "OBS Studio": 1.2}

    # A new share is a new notice.
    rig.desktop.window_list = [MEETING, TOOLBAR]
    rig.poll()
    assert len(rig.notices) == 2


def test_events_carry_app_names_only() -> None:
    rig = Rig()
    rig.desktop.window_list = [MEETING, TOOLBAR]
    rig.poll()
    rig.desktop.window_list = [MEETING]
    rig.poll(1.0)
    for kind, data in rig.drain():
        assert set(data) <= {"app", "duration_s"}, kind
        assert not any("山田" in str(v) or "Meeting" in str(v) for v in data.values())


def test_indicator_flicker_within_grace_is_one_share() -> None:
    rig = Rig(end_grace=0.5)
    rig.desktop.window_list = [TOOLBAR]
    rig.poll()
    rig.desktop.window_list = []
    assert rig.poll().active  # 0.2 s gone
    rig.desktop.window_list = [TOOLBAR]
    assert rig.poll().active
    assert [k for k, _ in rig.drain()] == [Kind.SHARE_STARTED]
    assert len(rig.notices) == 1


def test_protect_off_reports_but_does_not_cover() -> None:
    rig = Rig(protect=False)
    rig.desktop.window_list = [TOOLBAR]
    rig.poll()
    rig.poll(5.0)
    assert rig.monitor.state.active
    assert all(on is False for _, on, _ in rig.covers)
    assert rig.notices == [] and rig.selfchecks == 0
    assert rig.drain() == [(Kind.SHARE_STARTED, {"app": "Zoom"})]


def test_policy_update_takes_effect_on_next_poll() -> None:
    rig = Rig()
    rig.processes.names = ["acme-rec"]
    assert not rig.poll().active
    rig.monitor.set_policy(policy(extra=(ShareSignature(app="Acme Recorder", processes=("acme-rec",)),)))
    assert rig.poll().apps == ("Acme Recorder",)
    rig.monitor.set_policy(dataclasses.replace(policy(), screen_share=ScreenShare(protect=False)))
    rig.poll(1.0)
    assert rig.covers[-1] == ("share", False, None)


def test_unreadable_window_list_is_reported_as_unknown_once() -> None:
    rig = Rig()
    rig.desktop.window_list_supported = False
    state = rig.poll()
    assert not state.active and state.unknown == ("Zoom",)
    assert rig.drain() == [
        (
            Kind.CAPABILITY_DEGRADED,
            {"capability": "share_detection", "reason": "signal_unreadable"},
        )
    ]
    rig.poll()
    assert rig.drain() == []  # not repeated while unchanged
    rig.desktop.window_list_supported = True
    rig.desktop.fail = True  # the backend raises PlatformError: same answer, no crash
    assert rig.poll().unknown == ("Zoom",)
    rig.desktop.fail = False
    assert rig.poll().unknown == ()


def test_selfcheck_runs_after_delay_then_periodically_while_sharing() -> None:
    rig = Rig(selfcheck_delay=1.0, selfcheck_interval=10.0)
    rig.desktop.window_list = [TOOLBAR]
    rig.poll()
    assert rig.selfchecks == 0
    for _ in range(5):
        rig.poll()
    assert rig.selfchecks == 1
    for _ in range(49):
        rig.poll()
    assert rig.selfchecks == 1
    rig.poll()
    assert rig.selfchecks == 2
    rig.desktop.window_list = []
    for _ in range(100):
        rig.poll()
    assert rig.selfchecks == 2


def test_failing_consumers_do_not_stop_detection() -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("tray crashed")

    clock = FakeClock()
    desktop = ScriptedDesktop(window_list=[TOOLBAR])
    monitor = ShareMonitor(
        policy(),
        desktop,
        clock,
        boom,
        None,
        process_lister=ScriptedProcesses(["zoom"]),
        capture_probe=None,
        set_cover_reason=boom,
        notify=boom,
        selfcheck=boom,
        os_family="linux",
    )
    for _ in range(10):
        clock.advance(0.2)
        assert monitor.poll_once().apps == ("Zoom",)


def test_capture_probe_runs_at_its_own_cadence() -> None:
    calls: list[float] = []
    clock = FakeClock()

    def probe() -> list[object]:
        calls.append(clock.monotonic())
        return []

    monitor = ShareMonitor(
        policy(),
        ScriptedDesktop(),
        clock,
        lambda _: None,
        process_lister=ScriptedProcesses([]),
        capture_probe=probe,  # type: ignore[arg-type]
        capture_interval=2.0,
        os_family="linux",
    )
    for _ in range(25):
        clock.advance(0.2)
        monitor.poll_once()
    assert len(calls) == 3  # t=0.2, 2.2, 4.2


def test_title_regex_from_policy_is_case_insensitive() -> None:
    sig = ShareSignature(app="Webex", processes=("webex",), title=re.compile("共有中|sharing", re.IGNORECASE))
    rig = Rig()
    rig.monitor.set_policy(policy(extra=(sig,)))
    rig.processes.names = ["webex"]
    rig.desktop.window_list = [
        Window(id=9, title="Webex - SHARING", pid=1, process_name="webex", rect=Rect(0, 0, 1, 1))
    ]
    assert rig.poll().apps == ("Webex",)


def test_window_list_is_not_read_while_no_indicator_app_runs() -> None:
    rig = Rig()
    rig.processes.names = ["systemd", "Xorg", "bash"]  # no zoom/teams/browser: only process signatures apply
    for _ in range(10):
        rig.poll()
    assert rig.desktop.calls == 0
    rig.processes.names = ["systemd", "zoom"]
    rig.desktop.window_list = [MEETING, TOOLBAR]
    assert rig.poll().apps == ("Zoom",)
    assert rig.desktop.calls == 1


class StampedDesktop(ScriptedDesktop):
    """A backend offering the optional cheap change stamp (X11: _NET_CLIENT_LIST_STACKING)."""

    def window_list_stamp(self) -> object:
        return tuple(w.id for w in self.window_list)


def test_window_list_is_reread_only_when_the_stamp_changes_or_for_the_periodic_refresh() -> None:
    stamped = StampedDesktop(window_list=[MEETING])
    rig = Rig(desktop=stamped, full_window_refresh=2.0)
    rig.poll()
    for _ in range(5):
        rig.poll()
    assert stamped.calls == 1  # 1 s of polls, unchanged stamp
    stamped.window_list = [MEETING, TOOLBAR]  # a new top-level window: read at once
    assert rig.poll().apps == ("Zoom",)
    assert stamped.calls == 2
    # The toolbar is retitled in place (same ids): seen at the periodic full read, within full_window_refresh.
    stamped.window_list = [MEETING, dataclasses.replace(TOOLBAR, title="Zoom")]
    polls = 0
    while rig.monitor.state.active:
        rig.poll()
        polls += 1
    assert polls <= 2.0 / 0.2 + 2
    assert stamped.calls == 3


def test_a_start_or_exit_that_leaves_the_set_of_names_unchanged_is_not_evaluated_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """detect() sees the processes only through their names; the lister keeps that set the same object while
    no name appears or goes away, so the poll reuses the last result (scripted psutil, real lister)."""
    table = {1: "systemd", 2: "bash"}
    monkeypatch.setattr(psutil, "pids", lambda: sorted(table))
    monkeypatch.setattr(PsutilProcessLister, "_read_name", staticmethod(table.get))
    calls: list[int] = []

    def counting_detect(*args: Any, **kwargs: Any) -> ShareState:
        calls.append(1)
        return detect(*args, **kwargs)

    monkeypatch.setattr(monitor_module, "detect", counting_detect)
    rig = Rig(desktop=ScriptedDesktop(window_list=[]))
    rig.monitor._processes = PsutilProcessLister()
    assert not rig.poll().active and len(calls) == 1
    table[3] = "bash"  # another bash: a new snapshot, the same names
    assert not rig.poll().active and len(calls) == 1
    del table[2]
    assert not rig.poll().active and len(calls) == 1
    table[4] = "obs"  # a new name: evaluated, and OBS is a share
    assert rig.poll().apps == ("OBS Studio",) and len(calls) == 2
    del table[4]
    rig.poll(after=1.0)
    assert not rig.poll(after=1.0).active and len(calls) == 3
