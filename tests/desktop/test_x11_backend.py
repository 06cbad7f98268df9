"""The X11 backend against a real Xvfb + openbox."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from agent.platform.base import Monitor, PlatformError, Rect
from agent.platform.linux_x11 import X11Desktop
from tests.harness.xdesktop import XDesktop, wait_for


@pytest.fixture
def x11(xdesktop: XDesktop):
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
