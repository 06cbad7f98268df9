"""Share detection on a real X desktop (Xvfb + openbox): real Tk windows in processes named like the apps.

The windows play the indicator windows (Zoom's share toolbar, the browser's sharing bar); the processes are
the Python interpreter started through a symlink named "zoom" / "chrome", which is what psutil and
/proc/PID/comm report. Detection goes through the agent's X11 backend and the psutil process lister.
"""

from __future__ import annotations

import time

import pytest

from agent.report.stream import EventStream, Kind
from agent.share.detect import ShareState
from agent.share.monitor import COVER_MESSAGE_KEY, ShareMonitor
from agent.share.processes import PsutilProcessLister
from core.clock import SystemClock
from policy.model import Policy
from tests.harness.xdesktop import XDesktop, wait_for
from tests.harness.xwindows import StampedX11Desktop, desktop_for

POLICY = Policy(schema=1, id="desktop-test", version=1)


class CoverLog:
    """Records the runtime calls with their time, as ``Runtime.set_cover_reason`` would receive them."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, bool, str | None]] = []

    def __call__(self, reason: str, active: bool, key: str | None) -> None:
        self.calls.append((time.monotonic(), reason, active, key))

    def first(self, active: bool, after: float) -> float | None:
        return next((t for t, _, on, _ in self.calls if on is active and t >= after), None)


def make_monitor(
    desk: XDesktop, covers: CoverLog, stream: EventStream, changes: list[ShareState], stamped: bool = False
) -> ShareMonitor:
    return ShareMonitor(
        POLICY,
        StampedX11Desktop(desk.display) if stamped else desktop_for(desk),
        SystemClock(),
        changes.append,
        stream,
        process_lister=PsutilProcessLister(),
        capture_probe=None,
        set_cover_reason=covers,
        os_family="linux",
    )


@pytest.mark.parametrize("stamped", [False, True], ids=["full-reads", "stamp"])
def test_zoom_share_toolbar_sets_and_clears_the_cover_reason_within_one_second(
    xdesktop: XDesktop, stamped: bool
) -> None:
    xdesktop.open_window("顧客台帳 - 山田 太郎", text="03-1234-5678", process="custapp", x=60, y=300)
    meeting = xdesktop.open_window(
        "Zoom Meeting", text="meeting", process="zoom", wm_class="zoom", x=700, y=300
    )
    covers, stream, changes = CoverLog(), EventStream(), []
    events = stream.subscribe()
    monitor = make_monitor(xdesktop, covers, stream, changes, stamped)
    monitor.start()
    try:
        wait_for(lambda: changes, timeout=3, what="first state")
        assert not monitor.state.active  # Zoom in a meeting, not sharing

        shown = time.monotonic()
        toolbar = xdesktop.open_window(
            "as_toolbar", text="share", process="zoom", wm_class="zoom", y=0, height=48
        )
        wait_for(lambda: covers.first(True, shown), timeout=3, what="share cover reason")
        latency_on = covers.first(True, shown)
        assert latency_on is not None and latency_on - shown <= 1.0
        assert covers.calls[-1][1:] == ("share", True, COVER_MESSAGE_KEY)
        assert monitor.state.apps == ("Zoom",)

        closed = time.monotonic()
        toolbar.close()
        wait_for(lambda: covers.first(False, closed), timeout=3, what="share cover reason cleared")
        latency_off = covers.first(False, closed)
        assert latency_off is not None and latency_off - closed <= 1.0
        assert not monitor.state.active
    finally:
        monitor.stop()
        meeting.close()
    kinds = []
    while not events.empty():
        event = events.get_nowait()
        kinds.append((event.kind, event.data.get("app")))
    assert kinds == [(Kind.SHARE_STARTED, "Zoom"), (Kind.SHARE_ENDED, "Zoom")]
    print(f"\nshare->cover reason {latency_on - shown:.3f}s, end->cleared {latency_off - closed:.3f}s")


@pytest.mark.parametrize(
    "title",
    ["meet.google.com is sharing your screen.", "meet.google.com が画面を共有しています。"],
    ids=["en", "ja"],
)
def test_browser_indicator_title_triggers(xdesktop: XDesktop, title: str) -> None:
    browser = xdesktop.open_window(
        "Meet - abc-defg-hij - Google Chrome", text="meet", process="chrome", wm_class="Google-chrome"
    )
    covers, stream, changes = CoverLog(), EventStream(), []
    monitor = make_monitor(xdesktop, covers, stream, changes)
    assert not monitor.poll_once().active  # the Meet tab alone is not a share

    bar = xdesktop.open_window(
        title, text="stop", process="chrome", wm_class="Google-chrome", y=700, height=40
    )
    assert wait_for(lambda: monitor.poll_once().active, timeout=3, what="indicator detected")
    assert monitor.state.apps == ("Browser",)
    assert covers.calls[-1][1:] == ("share", True, COVER_MESSAGE_KEY)

    bar.close()
    wait_for(lambda: not monitor.poll_once().active, timeout=3, what="share ended")
    browser.close()


def test_indicator_title_in_a_non_browser_process_does_not_trigger(xdesktop: XDesktop) -> None:
    xdesktop.open_window("meet.google.com is sharing your screen.", text="notes", process="gedit")
    xdesktop.open_window("as_toolbar", text="x", process="custapp", wm_class="zoom")
    monitor = make_monitor(xdesktop, CoverLog(), EventStream(), [])
    for _ in range(5):
        assert not monitor.poll_once().active
