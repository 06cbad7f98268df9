"""Tray windows on a real X display: a second click on the same item opens the window again."""

from __future__ import annotations

import tkinter as tk

from agent.i18n import Translator
from agent.tray.statuswindow import show_pause_dialog, show_text_window
from tests.harness.xdesktop import XDesktop


def test_reopening_a_named_window_replaces_it(xdesktop: XDesktop) -> None:
    # Before the fix the second Toplevel(name="reported") raised TclError ("window name already exists"):
    # clicking "What is reported" while the window sat behind others did nothing.
    root = tk.Tk(screenName=xdesktop.display)
    root.withdraw()
    try:
        show_text_window(root, "What is reported", "first", "reported")
        win = show_text_window(root, "What is reported", "second", "reported")
        text = win.nametowidget("text").get("1.0", "end").strip()
        assert text == "second"
        assert [name for name in root.children if name == "reported"] == ["reported"]
        show_pause_dialog(root, Translator("en"), 15, lambda _m, _r: None)
        show_pause_dialog(root, Translator("en"), 15, lambda _m, _r: None)
        assert "pause" in root.children
    finally:
        root.destroy()
