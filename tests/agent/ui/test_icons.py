"""Tray icons: one distinct image per state, readable on light and dark panels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.ui.icons import FILL, TrayState, icon_image, panel_theme


def _center(state: TrayState, panel: str = "light") -> tuple[int, int, int]:
    img = icon_image(state, panel, 64).convert("RGB")  # type: ignore[arg-type]
    # Sample just left of the glyph, inside the shield.
    r, g, b = img.getpixel((14, 30))  # type: ignore[misc]
    return int(r), int(g), int(b)


@pytest.mark.parametrize("state", list(TrayState))
def test_each_state_is_drawn_in_its_colour(state: TrayState) -> None:
    got = _center(state)
    want = FILL[state]
    assert all(abs(a - b) < 30 for a, b in zip(got, want, strict=True)), (got, want)


def test_states_differ_pairwise_and_sizes_are_square() -> None:
    images = {s: icon_image(s, "light", 32).tobytes() for s in TrayState}
    assert len(set(images.values())) == len(TrayState)
    for size in (16, 22, 32, 48, 64):
        img = icon_image(TrayState.PROTECTED, "dark", size)
        assert img.size == (size, size) and img.mode == "RGBA"


def test_outline_contrasts_with_panel() -> None:
    # The shield's top edge is outlined dark on light panels and light on dark panels.
    def top_edge(panel: str) -> int:
        img = icon_image(TrayState.PAUSED, panel, 64).convert("LA")  # type: ignore[arg-type]
        lum = [img.getpixel((32, y)) for y in range(0, 8)]
        opaque = [int(v[0]) for v in lum if int(v[1]) > 200]  # type: ignore[index]
        return opaque[0]

    assert top_edge("light") < 80
    assert top_edge("dark") > 180


def test_panel_theme_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GTK_THEME", raising=False)
    monkeypatch.setenv("MAMORI_PANEL", "dark")
    assert panel_theme() == "dark"
    monkeypatch.setenv("MAMORI_PANEL", "")
    monkeypatch.setenv("GTK_THEME", "Adwaita:dark")
    assert panel_theme() == "dark"
    monkeypatch.setenv("GTK_THEME", "Adwaita")
    assert panel_theme() == "light"


def test_drawing_an_icon_loads_no_font_library() -> None:
    # ImageDraw imports ImageFont, which maps FreeType and HarfBuzz (1.7 MB resident) into the agent with a tray.
    script = (
        "import sys\n"
        "from agent.ui.icons import TrayState, icon_image\n"
        "img = icon_image(TrayState.DEGRADED, 'dark', 64)\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(img.getbbox() is not None, 'PIL.Image' in sys.modules,\n"
        "      sorted(m for m in sys.modules if m in ('PIL.ImageDraw', 'PIL.ImageFont', 'PIL._imagingft')),\n"
        "      'libfreetype' in maps)\n"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    assert out == "True True [] False", out
