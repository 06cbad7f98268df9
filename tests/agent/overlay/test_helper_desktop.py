"""The cover helper process on a real X server: covers hide text from OCR, follow, survive a kill."""

from __future__ import annotations

import os
import signal
import time

import pytest

from agent.overlay.protocol import CoverSpec
from agent.overlay.supervisor import OverlaySupervisor
from agent.platform.base import Rect
from tests.harness.xdesktop import Box, XDesktop, wait_for

PHONE = "03-1234-5678"


def _rect(box: Box) -> Rect:
    return Rect(box.x, box.y, box.width, box.height)


@pytest.fixture
def overlay(xdesktop: XDesktop):
    sup = OverlaySupervisor(env=xdesktop.env)
    sup.start()
    yield sup
    sup.stop()


@pytest.mark.parametrize("style", ["blur", "opaque"])
def test_cover_makes_number_unreadable(xdesktop: XDesktop, overlay: OverlaySupervisor, style: str) -> None:
    win = xdesktop.open_window("顧客台帳", text=PHONE, x=40, y=60)
    other = xdesktop.open_window("Notes", text="090-8765-4321", x=40, y=420, process="notes")
    box = win.rect()
    assert xdesktop.can_read(PHONE, box)
    overlay.show([CoverSpec("w:1", _rect(box), style, "離席中 / Away")])
    assert overlay.wait_applied(5)
    assert not xdesktop.can_read(PHONE, box)
    assert xdesktop.can_read("090-8765-4321", other.rect())
    overlay.show([])
    assert overlay.wait_applied(5)
    wait_for(lambda: xdesktop.can_read(PHONE, box), what="number readable after uncover")


def test_killed_helper_covers_again_within_one_second(xdesktop: XDesktop, overlay: OverlaySupervisor) -> None:
    win = xdesktop.open_window("顧客台帳", text=PHONE, x=40, y=60)
    box = win.rect()
    overlay.show([CoverSpec("w:1", _rect(box), "opaque", "Away")])
    assert overlay.wait_applied(5)
    pid = overlay.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: overlay.pid not in (None, pid), timeout=2, interval=0.01, what="a new helper")
    assert overlay.wait_applied(2)
    elapsed = time.monotonic() - killed
    assert elapsed < 1.0, f"cover back after {elapsed:.2f}s"
    assert not xdesktop.can_read(PHONE, box)
    assert overlay.restarts == 1
