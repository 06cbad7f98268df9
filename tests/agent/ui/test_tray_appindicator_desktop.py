"""The AppIndicator tray backend for real (issue 12, item 2): Debian's python3-gi and
gir1.2-ayatanaappindicator3-0.1, seen from this venv through a folder holding only the system ``gi`` package.
With no StatusNotifierWatcher on the test desktop, libayatana-appindicator docks into the XEmbed tray (trayer),
as on many X11 desktops; its menu is a GTK menu, read back with OCR and clicked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.ui.icons import TrayState
from tests.agent.ui.test_tray_desktop import status_for
from tests.harness.uidesk import TRAYAPP, ocr_words, save_png, settle
from tests.harness.xdesktop import Box, XDesktop, wait_for

SYSTEM_GI = Path("/usr/lib/python3/dist-packages/gi")
TYPELIB = Path("/usr/lib/x86_64-linux-gnu/girepository-1.0/AyatanaAppIndicator3-0.1.typelib")
ROOT = Path(__file__).resolve().parents[3]


def _icon(desk: XDesktop) -> int | None:
    r = subprocess.run(
        ["xdotool", "search", "--classname", "^Mamori$"],
        env=desk.env,
        capture_output=True,
        text=True,
        check=False,
    )
    for xid in r.stdout.split():
        box = desk.window_box(int(xid))
        if box.width > 4 and box.y >= 0:
            return int(xid)
    return None


@pytest.mark.apps
def test_appindicator_icon_docks_and_its_menu_works(xdesktop: XDesktop, tmp_path: Path) -> None:
    if not SYSTEM_GI.is_dir() or not TYPELIB.exists():
        pytest.skip("python3-gi and gir1.2-ayatanaappindicator3-0.1 are not installed (run .ci/run)")
    gi_only = tmp_path / "gi-only"
    gi_only.mkdir()
    (gi_only / "gi").symlink_to(SYSTEM_GI)
    status, out = tmp_path / "status.json", tmp_path / "out.jsonl"
    status.write_text(json.dumps(status_for(TrayState.PROTECTED)), encoding="utf-8")
    out.write_text("")
    log = tmp_path / "trayapp.log"
    env = {**xdesktop.env, "PYSTRAY_BACKEND": "appindicator", "PYTHONPATH": f"{ROOT}:{gi_only}"}
    argv = [sys.executable, str(TRAYAPP), "--status", str(status), "--out", str(out), "--lang", "en"]
    proc = subprocess.Popen([*argv, "--state-dir", str(tmp_path / "state")], env=env, stderr=log.open("w"))
    try:
        xid = wait_for(lambda: _icon(xdesktop), timeout=20, what=f"the AppIndicator icon ({log})")
        assert "tray backend appindicator (menu: True)" in log.read_text()
        box = xdesktop.window_box(xid)
        xdesktop.click(*box.center)

        def menu() -> Box | None:
            for candidate in xdesktop.override_redirect_windows():
                if candidate.height > 100 and any(w == "Step" for w, _ in ocr_words(xdesktop, candidate)):
                    return candidate
            return None

        found = wait_for(menu, timeout=15, what="the AppIndicator (GTK) menu")
        settle(0.3)
        save_png("tray-menu-appindicator.en.png", xdesktop.screenshot(found))
        step = next(b for w, b in ocr_words(xdesktop, found) if w == "Step")
        xdesktop.click(*step.center)

        def commands() -> list[str]:
            lines = out.read_text(encoding="utf-8").splitlines()
            return [json.loads(line).get("command", "") for line in lines if line.strip()]

        wait_for(lambda: "step_away" in commands(), timeout=10, what="step_away from the AppIndicator menu")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
