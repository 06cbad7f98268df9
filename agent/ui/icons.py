"""Tray icon images, one per state, for light and dark panels, drawn with Pillow at run time.

Drawing instead of shipping PNGs keeps every size sharp (Windows asks for 16/32 px, GNOME for 22/48 px) and
keeps PyInstaller from missing data files. Each state differs in colour *and* glyph, so the state is readable
for colour-blind workers and in a greyscale screenshot.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

Panel = Literal["light", "dark"]


class TrayState(StrEnum):
    PROTECTED = "protected"
    WARNING = "warning"
    COVERED = "covered"
    BLOCKED = "blocked"
    PAUSED = "paused"
    DEGRADED = "degraded"


# Fill colour per state (RGB). Chosen to stay distinct from each other under deuteranopia.
FILL: dict[TrayState, tuple[int, int, int]] = {
    TrayState.PROTECTED: (30, 150, 80),
    TrayState.WARNING: (235, 170, 0),
    TrayState.COVERED: (40, 90, 200),
    TrayState.BLOCKED: (205, 30, 30),
    TrayState.PAUSED: (120, 120, 120),
    TrayState.DEGRADED: (225, 110, 20),
}

# Outline that separates the shield from the panel: dark on light panels, light on dark panels.
OUTLINE: dict[str, tuple[int, int, int]] = {"light": (20, 20, 20), "dark": (240, 240, 240)}
GLYPH = (255, 255, 255)


def panel_theme() -> Panel:
    """The panel's theme: $MAMORI_PANEL (light|dark), else a dark GTK theme name, else light."""
    env = os.environ.get("MAMORI_PANEL", "").lower()
    if env in ("light", "dark"):
        return "dark" if env == "dark" else "light"
    if "dark" in os.environ.get("GTK_THEME", "").lower():
        return "dark"
    return "light"


@lru_cache(maxsize=64)
def icon_image(state: TrayState, panel: Panel = "light", size: int = 64) -> Image.Image:
    """A square RGBA image of a shield in the state's colour with the state's glyph."""
    # Pillow (3.2 MB) only where an icon is drawn: an agent without a tray never loads it (docs/performance.md).
    from PIL import Image, ImageDraw

    scale = 4  # draw large and downsample: Pillow's primitives are not anti-aliased
    big = size * scale
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    w = big
    stroke = max(scale, big // 16)
    shield = [
        (w * 0.50, w * 0.04),
        (w * 0.92, w * 0.18),
        (w * 0.88, w * 0.58),
        (w * 0.50, w * 0.96),
        (w * 0.12, w * 0.58),
        (w * 0.08, w * 0.18),
    ]
    draw.polygon(shield, fill=FILL[state], outline=OUTLINE[panel], width=stroke)
    _glyph(draw, state, w)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _glyph(draw: ImageDraw.ImageDraw, state: TrayState, w: int) -> None:
    line = max(4, w // 10)
    if state is TrayState.PROTECTED:  # check mark
        draw.line([(w * 0.30, w * 0.48), (w * 0.45, w * 0.64), (w * 0.72, w * 0.32)], fill=GLYPH, width=line)
    elif state is TrayState.WARNING:  # exclamation mark
        draw.rectangle([w * 0.45, w * 0.22, w * 0.55, w * 0.56], fill=GLYPH)
        draw.ellipse([w * 0.44, w * 0.64, w * 0.56, w * 0.76], fill=GLYPH)
    elif state is TrayState.COVERED:  # a window with a closed shutter
        draw.rectangle([w * 0.28, w * 0.28, w * 0.72, w * 0.66], outline=GLYPH, width=line // 2)
        for y in (0.40, 0.52):
            draw.line([(w * 0.30, w * y), (w * 0.70, w * y)], fill=GLYPH, width=line // 2)
    elif state is TrayState.BLOCKED:  # X
        draw.line([(w * 0.32, w * 0.28), (w * 0.68, w * 0.66)], fill=GLYPH, width=line)
        draw.line([(w * 0.68, w * 0.28), (w * 0.32, w * 0.66)], fill=GLYPH, width=line)
    elif state is TrayState.PAUSED:  # two bars
        draw.rectangle([w * 0.34, w * 0.26, w * 0.45, w * 0.66], fill=GLYPH)
        draw.rectangle([w * 0.55, w * 0.26, w * 0.66, w * 0.66], fill=GLYPH)
    elif state is TrayState.DEGRADED:  # a broken shield: a wavy line
        draw.line(
            [
                (w * 0.28, w * 0.50),
                (w * 0.40, w * 0.36),
                (w * 0.52, w * 0.56),
                (w * 0.64, w * 0.36),
                (w * 0.72, w * 0.46),
            ],
            fill=GLYPH,
            width=line,
        )
