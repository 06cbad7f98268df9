"""Tray windows on a real X display: a second click on the same item opens the window again.

Tk runs in a child process, as in the other desktop tests: a Tk interpreter still alive in the test process
when its Xvfb stops would end the whole pytest run (Xlib "fatal IO error").
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.harness.xdesktop import XDesktop

ROOT = Path(__file__).resolve().parents[3]


def _run_tk(xdesktop: XDesktop, body: str) -> str:
    code = "import tkinter as tk\nroot = tk.Tk()\nroot.withdraw()\n" + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**xdesktop.env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_reopening_a_named_window_replaces_it(xdesktop: XDesktop) -> None:
    # Before the fix the second Toplevel(name="reported") raised TclError ("window name already exists"):
    # clicking "What is reported" while the window sat behind others did nothing.
    out = _run_tk(
        xdesktop,
        """
        from agent.i18n import Translator
        from agent.ui.statuswindow import show_pause_dialog, show_text_window

        show_text_window(root, "What is reported", "first", "reported")
        win = show_text_window(root, "What is reported", "second", "reported")
        print(win.nametowidget("text").get("1.0", "end").strip())
        show_pause_dialog(root, Translator("en"), 15, lambda _m, _r: None)
        show_pause_dialog(root, Translator("en"), 15, lambda _m, _r: None)
        print(sorted(root.children))
        root.destroy()
        """,
    )
    assert out.splitlines() == ["second", "['pause', 'reported']"]


def test_a_second_acknowledgement_dialog_replaces_the_first(xdesktop: XDesktop) -> None:
    # Before the fix every new policy version and every menu click stacked one more dialog.
    out = _run_tk(
        xdesktop,
        """
        from agent.ui.ack import show_ack_dialog
        from agent.i18n import Translator
        from policy.load import load_policy

        policy = load_policy(b'schema = 1\\nid = "p"\\nversion = 1\\n')
        show_ack_dialog(root, Translator("en"), policy, lambda _i, _v: None)
        show_ack_dialog(root, Translator("en"), policy, lambda _i, _v: None)
        print(sorted(root.children))
        root.destroy()
        """,
    )
    assert out.splitlines() == ["['ack']"]
