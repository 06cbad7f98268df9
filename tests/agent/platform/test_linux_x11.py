"""The X11 backend against a real Xvfb + openbox."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.platform.base import Monitor, PlatformError, Rect
from agent.platform.linux_x11 import X11Desktop
from tests.harness.xdesktop import XDesktop, wait_for


@pytest.fixture
def x11(xdesktop: XDesktop) -> Iterator[X11Desktop]:
    desk = X11Desktop(xdesktop.display, lock_command=["true"])
    yield desk
    desk.close()


def test_windows_carry_title_pid_process_geometry_and_state(xdesktop: XDesktop, x11: X11Desktop) -> None:
    a = xdesktop.open_window("顧客台帳.xlsx - Excel", process="excel", wm_class="Xlmain", x=50, y=100)
    b = xdesktop.open_window("memo", process="notes", x=700, y=120)
    b.activate()
    windows = {w.id: w for w in x11.windows()}
    wa, wb = windows[a.xid], windows[b.xid]
    assert wa.title == "顧客台帳.xlsx - Excel" and wa.pid == a.pid and wa.process_name == "excel"
    assert wa.wm_class == "Xlmain"
    box, frame = a.rect(), a.frame_rect()
    assert frame.height > box.height  # openbox's title bar
    assert wa.rect == Rect(box.x, box.y, box.width, box.height)
    assert wa.frame == Rect(frame.x, frame.y, frame.width, frame.height)  # decorations, for the title cover
    assert wb.active and not wa.active
    assert [w.id for w in x11.windows()][-1] == b.xid  # topmost last
    b.set_fullscreen(True)
    wait_for(lambda: next(w for w in x11.windows() if w.id == b.xid).fullscreen, what="fullscreen state")
    xdesktop.xdotool("windowminimize", "--sync", str(a.xid))
    wait_for(lambda: next(w for w in x11.windows() if w.id == a.xid).minimized, what="minimized state")


def test_idle_counter_and_screensaver_lock_state(xdesktop: XDesktop, x11: X11Desktop) -> None:
    xdesktop.nudge()
    assert x11.idle_seconds() < 1.0
    time.sleep(1.2)
    assert x11.idle_seconds() >= 1.0
    assert not x11.is_locked()
    subprocess.run(["xset", "s", "activate"], env=xdesktop.env, check=True)
    assert x11.is_locked()
    xdesktop.nudge()
    wait_for(lambda: not x11.is_locked(), what="screensaver off after input")
    assert x11.idle_seconds() < 1.0


def test_capabilities_monitors_and_lock_command(xdesktop: XDesktop, tmp_path: Path) -> None:
    marker = tmp_path / "locked"
    desk = X11Desktop(xdesktop.display, lock_command=["touch", str(marker)])
    try:
        caps = desk.capabilities()
        assert caps.idle and caps.window_list and caps.cover and caps.lock and caps.lock_method == "command"
        assert desk.monitors() == [Monitor(Rect(0, 0, 1280, 800), primary=True)]
        desk.lock()
        assert marker.exists()
    finally:
        desk.close()
    failing = X11Desktop(xdesktop.display, lock_command=["false"])
    try:
        with pytest.raises(PlatformError, match="false exited 1"):
            failing.lock()
    finally:
        failing.close()


def test_window_list_stamp_changes_with_the_top_level_windows_and_their_titles(
    xdesktop: XDesktop, x11: X11Desktop
) -> None:
    a = xdesktop.open_window("memo", process="notes", x=50, y=100)
    a.activate()
    assert x11.window_list_stamp_titles  # the listen-only connection is up: retitles count too
    first = x11.window_list_stamp()
    time.sleep(0.2)
    assert x11.window_list_stamp() == first  # nothing changed: the share monitor skips a re-read
    a.set_title("顧客台帳 - Excel")  # retitled in place (a browser tab becoming the share indicator)
    wait_for(lambda: x11.window_list_stamp() != first, what="a retitle to change the stamp")
    retitled = x11.window_list_stamp()
    b = xdesktop.open_window("Sharing control bar | Microsoft Teams", process="teams", x=700, y=120)
    wait_for(lambda: x11.window_list_stamp() != retitled, what="a new window to change the stamp")
    opened = x11.window_list_stamp()
    b.set_title("as_toolbar")  # a window that appeared after the first stamp is watched too
    wait_for(lambda: x11.window_list_stamp() != opened, what="the new window's retitle")
    titled = x11.window_list_stamp()
    a.activate()  # restacked: a re-read is due too (stacking decides which cover is on top)
    wait_for(lambda: x11.window_list_stamp() != titled, what="restacking to change the stamp")
    restacked = x11.window_list_stamp()
    b.close()
    wait_for(lambda: x11.window_list_stamp() != restacked, what="a closed window to change the stamp")


def test_window_list_stamp_without_the_watch_is_the_stacking_list(
    xdesktop: XDesktop, x11: X11Desktop
) -> None:
    x11._watch_failed = True  # as when the second X connection cannot be opened
    assert not x11.window_list_stamp_titles
    a = xdesktop.open_window("memo", process="notes", x=50, y=100)
    stamp = x11.window_list_stamp()
    assert stamp == x11.window_list_stamp()
    listed = [w.id for w in x11.windows()]  # docks (trayer) are in the stamp, not in the list
    assert listed == [xid for xid in stamp if xid in listed]  # type: ignore[attr-defined]
    assert a.xid in listed
    a.close()
    wait_for(lambda: x11.window_list_stamp() != stamp, what="a closed window to leave the stamp")


def test_screensaver_changes_are_pushed_to_the_presence_loop(xdesktop: XDesktop, x11: X11Desktop) -> None:
    """``watch_lock_state``: the X server pushes ScreenSaverNotify to a listen-only connection, whose thread
    calls back on every change (no polling); the backend says how often the rest must still be asked."""
    import threading

    changed = threading.Event()
    interval = x11.watch_lock_state(changed.set)
    # logind and a desktop screen saver on the session bus are still asked, every LOGIND_INTERVAL.
    assert interval == x11._state.poll_interval
    assert x11.lock_state_pushed
    assert not changed.is_set()
    subprocess.run(["xset", "s", "activate"], env=xdesktop.env, check=True)
    assert changed.wait(5), "no callback when the screensaver turned on"
    assert x11.is_locked()
    changed.clear()
    xdesktop.nudge()
    assert changed.wait(5), "no callback when input turned the screensaver off"
    wait_for(lambda: not x11.is_locked(), what="screensaver off after input")
    x11.close()
    assert not x11.lock_state_pushed
