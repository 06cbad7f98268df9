"""The harness itself: windows, input, screenshots and OCR work on the real X desktop."""

from __future__ import annotations

import psutil

from tests.harness.xdesktop import XDesktop, wait_for


def test_window_text_is_readable_and_moves(xdesktop: XDesktop) -> None:
    win = xdesktop.open_window("顧客台帳 - Excel", text="03-1234-5678", process="excel", x=60, y=60)
    assert psutil.Process(win.pid).name() == "excel"
    box = win.rect()
    assert xdesktop.can_read("03-1234-5678", box)
    win.move(500, 400)
    moved = win.rect()
    assert (moved.x, moved.y) != (box.x, box.y)
    assert xdesktop.can_read("03-1234-5678", moved)
    assert xdesktop.tray_running()
    win.close()
    assert win.xid not in xdesktop.client_list()


def test_wide_desktop_has_two_monitors(xdesktop_wide: XDesktop) -> None:
    assert [m.x for m in xdesktop_wide.monitors] == [0, 1280]
    win = xdesktop_wide.open_window("Notes", text="090-8765-4321", x=1400, y=100)
    wait_for(lambda: win.rect().x >= 1280, what="window on the right monitor")
    assert xdesktop_wide.can_read("090-8765-4321", win.rect())
