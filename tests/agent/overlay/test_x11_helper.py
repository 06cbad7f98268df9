"""The X11 cover helper (agent/overlay/x11_helper.py): no Tk in the process, labels in Japanese and English that
fit the cover, clicks reported, and a label drawn without a Japanese font when there is none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.overlay.protocol import CoverSpec
from agent.overlay.supervisor import OverlaySupervisor
from agent.overlay.x11_helper import wrap
from agent.platform.base import Rect
from tests.harness.xdesktop import Box, XDesktop, wait_for

LABEL = "離席中のため顧客情報を隠しています。クリックすると表示します\nCustomer data hidden while you are away. Click here to show it again"


def test_wrap_breaks_at_spaces_and_inside_japanese_text() -> None:
    def width_of(s: str) -> int:
        return 10 * len(s)

    lines = wrap("Customer data hidden while away", width_of, 120)
    assert lines == ["Customer", "data hidden", "while away"]
    lines = wrap("離席中のため顧客情報を隠しています", width_of, 60)
    assert lines == ["離席中のため", "顧客情報を隠", "しています"]
    assert all(width_of(line) <= 60 for line in lines)
    assert wrap("a\nb", width_of, 100) == ["a", "b"]


@pytest.fixture
def overlay(xdesktop: XDesktop):
    clicks: list[str] = []
    sup = OverlaySupervisor(env=xdesktop.env, on_click=clicks.append)
    sup.start()
    sup.clicks = clicks  # type: ignore[attr-defined]
    yield sup
    sup.stop()


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_the_linux_helper_draws_without_tk_and_reads_in_both_languages(
    xdesktop: XDesktop, overlay: OverlaySupervisor
) -> None:
    win = xdesktop.open_window("顧客台帳", text="03-1234-5678", x=40, y=60, width=900)
    box = win.rect()
    overlay.show(
        [CoverSpec("w:1", Rect(box.x, box.y, box.width, box.height), "opaque", LABEL, clickable=True)]
    )
    assert overlay.wait_applied(5)
    assert overlay.pid is not None
    maps = _maps(overlay.pid)
    assert "libX11" not in maps and "libtk" not in maps and "libtcl" not in maps, "the X11 helper loaded Tk"
    text = " ".join(xdesktop.ocr(box, lang="eng+jpn").split())
    assert "Click here to show" in text, text
    assert "クリックすると表示" in "".join(text.split()), text
    assert not xdesktop.can_read("03-1234-5678", box)
    # A click on a clickable cover reaches the agent (the "click" reveal).
    xdesktop.click(box.x + 20, box.y + 20)
    wait_for(lambda: overlay.clicks == ["w:1"], timeout=3, what="the click")  # type: ignore[attr-defined]


def test_without_a_japanese_font_the_cover_still_covers_and_says_why(
    xdesktop: XDesktop, tmp_path: Path
) -> None:
    # No fontconfig and none of the known font files: the helper falls back to Pillow's own font.
    env = {**xdesktop.env, "PATH": str(tmp_path)}
    script = (
        "import agent.overlay.x11_helper as h, runpy, sys; h.FONT_PATHS = (); "
        "sys.argv = ['helper']; runpy.run_module('agent.overlay.helper', run_name='__main__')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert '"ready"' in proc.stdout.readline()
        win = xdesktop.open_window("顧客台帳", text="03-1234-5678", x=40, y=60)
        box = win.rect()
        cover = {"key": "w:1", "x": box.x, "y": box.y, "w": box.width, "h": box.height, "style": "opaque"}
        proc.stdin.write(
            json.dumps({"op": "covers", "seq": 1, "covers": [{**cover, "label": "Away"}]}) + "\n"
        )
        proc.stdin.flush()
        answers = [proc.stdout.readline(), proc.stdout.readline()]
        assert any("no font with Japanese found" in a for a in answers), answers
        assert any('"applied"' in a for a in answers), answers
        time.sleep(0.2)
        assert not xdesktop.can_read("03-1234-5678", box)
        assert "Away" in xdesktop.ocr(Box(box.x, box.y, box.width, box.height))
    finally:
        proc.kill()
        proc.wait()
