"""The status window on a real X display, read back with OCR in ja and en (issue 12, item 1): checks by name
with the endpoint they probed, each failing one with its fix, and the reason of a grace period. The
screenshots are the user guides' (docs/img/status-window.{ja,en}.png with MAMORI_UPDATE_DOCS_IMAGES=1)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.i18n import Translator
from tests.harness.uidesk import find_window, save_png, settle, squash
from tests.harness.xdesktop import XDesktop

ROOT = Path(__file__).resolve().parents[3]

STATUS = {
    "presence": {"stage": "active"},
    "policy": {"id": "acme-crm", "version": 4},
    "posture": {
        "block": False,
        "warnings": ["vpn"],
        "block_at": "2026-04-01T01:10:00+00:00",
        "checks": [
            {"id": "vpn", "status": "fail", "mode": "block", "enforcement": "warn"},
            {"id": "tls:crm.example.co.jp:443", "status": "error", "mode": "warn", "enforcement": "warn"},
            {"id": "device.disk_encryption", "status": "pass", "mode": "warn", "enforcement": "none"},
        ],
    },
}

CHILD = """
import json, sys, tkinter as tk
from pathlib import Path
from agent.i18n import Translator
from agent.ui.statuswindow import StatusWindow

lang, status, stop_file = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])

class Actions:
    def __getattr__(self, name):
        return lambda *a: None

root = tk.Tk()
root.withdraw()
window = StatusWindow(root, Translator(lang), lambda: status, Actions())
window.present()
def report():
    print(json.dumps({"text": window._lines.cget("text")}), flush=True)
def poll():
    if stop_file.exists():
        root.destroy()
    else:
        root.after(100, poll)
root.after(700, report)
root.after(100, poll)
root.mainloop()
"""


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_status_window_names_endpoints_fixes_and_the_grace_cause(
    xdesktop: XDesktop, tmp_path: Path, lang: str
) -> None:
    t = Translator(lang)
    stop = tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), lang, json.dumps(STATUS), str(stop)],
        env={**xdesktop.env, "PYTHONPATH": str(ROOT), "TZ": "Asia/Tokyo"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        text = squash(json.loads(line)["text"])
        expected = {
            "ja": [
                "VPNが不適合のため、10:10に顧客データの画面を隠します",
                "→会社のVPNに接続してください。",
                "暗号化通信(TLS)crm.example.co.jp:443:確認できません",
                "ディスク暗号化:OK",
            ],
            "en": [
                "VPNnotcompliant:customer-datawindowsarecoveredat10:10",
                "→ConnecttothecompanyVPN.",
                "Encryptedconnections(TLS)crm.example.co.jp:443:couldnotcheck",
                "Diskencryption:OK",
            ],
        }[lang]
        for piece in expected:
            assert piece in text, (piece, text)
        assert "device.disk_encryption" not in text
        win = find_window(xdesktop, t("status.title"))
        box = xdesktop.window_box(win)
        settle(0.5)
        ocr = squash(xdesktop.ocr(box, lang="jpn" if lang == "ja" else "eng"))
        assert ("10:10" in ocr) and ("crm.example" in ocr), ocr
        save_png(f"status-window.{lang}.png", xdesktop.screenshot(box))
    finally:
        stop.touch()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
