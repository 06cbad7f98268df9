"""The tray on X11 without AppIndicator (pystray's xorg backend): a tooltip on hover and a menu on right click,
drawn with Tk, read back with OCR (issue 12, item 2). Before: no tooltip and no menu at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.i18n import Translator
from agent.ui.icons import TrayState
from tests.agent.ui.test_tray_desktop import status_for
from tests.harness.uidesk import TrayApp, ocr_words, save_png, settle, squash
from tests.harness.xdesktop import Box, XDesktop, wait_for


def _popup(desk: XDesktop, icon: Box) -> Box:
    """The override-redirect window (tooltip or menu) that is not the icon's own."""

    def found() -> Box | None:
        boxes = [b for b in desk.override_redirect_windows() if b.width > 40 and b.height > 16 and b != icon]
        return max(boxes, key=lambda b: b.width * b.height) if boxes else None

    return wait_for(found, timeout=10, what="a tooltip or menu window")


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_hover_shows_a_tooltip_and_right_click_a_menu(xdesktop: XDesktop, tmp_path: Path, lang: str) -> None:
    t = Translator(lang)
    ocr_lang = "jpn" if lang == "ja" else "eng"
    app = TrayApp(xdesktop, tmp_path, lang, status_for(TrayState.PROTECTED))
    try:
        icon = app.icon_box()
        xdesktop.mouse_move(10, 400)
        settle(0.3)
        xdesktop.mouse_move(*icon.center)
        tip = _popup(xdesktop, icon)
        settle(0.3)
        text = squash(xdesktop.ocr(tip, lang=ocr_lang))
        assert squash(t("tray.state.protected")).split(":")[0] in text, text
        save_png(f"tray-tooltip.{lang}.png", xdesktop.screenshot(tip))

        xdesktop.xdotool("click", "3")  # the pointer is already on the icon
        menu = wait_for(
            lambda: next(
                (
                    b
                    for b in xdesktop.override_redirect_windows()
                    if b.height > 100
                    and squash(t("tray.menu.step_away")) in squash(xdesktop.ocr(b, lang=ocr_lang))
                ),
                None,
            ),
            timeout=15,
            what="the tray menu",
        )
        save_png(f"tray-menu.{lang}.png", xdesktop.screenshot(menu))
        if lang == "en":
            words = ocr_words(xdesktop, menu)
            step = next(b for w, b in words if w == "Step")
            xdesktop.click(*step.center)
            wait_for(lambda: "step_away" in app.commands(), timeout=5, what="step_away from the menu")
    finally:
        assert app.stop() == 0
