"""Tray icon images, one per state, for light and dark panels, drawn at run time.

Drawing instead of shipping PNGs keeps every size sharp (Windows asks for 16/32 px, GNOME for 22/48 px) and
keeps PyInstaller from missing data files. Each state differs in colour *and* glyph, so the state is readable
for colour-blind workers and in a greyscale screenshot.

Every shape is a polygon, filled here by a scanline into a mask at four times the size and laid onto a
``PIL.Image`` in its colour, then downsampled (anti-aliasing). Not ``PIL.ImageDraw``: it imports ``ImageFont``,
which loads FreeType and HarfBuzz, 1.7 MB of resident memory for an icon with no text in it
(docs/performance-agent.md, "agent memory, enrolled + tray").
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from enum import StrEnum
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

Panel = Literal["light", "dark"]
Point = tuple[float, float]
Polygon = Sequence[Point]


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
    from PIL import Image

    scale = 4  # draw large and downsample: the scanline below is not anti-aliased
    big = size * scale
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
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
    _fill(img, [shield], OUTLINE[panel])
    _fill(img, [_inset(shield, stroke)], FILL[state])  # the outline is inside the shield's edge
    _fill(img, list(_glyph(state, w)), GLYPH)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _glyph(state: TrayState, w: int) -> Iterator[Polygon]:
    line = max(4, w // 10)
    if state is TrayState.PROTECTED:  # check mark
        yield from _polyline([(w * 0.30, w * 0.48), (w * 0.45, w * 0.64), (w * 0.72, w * 0.32)], line)
    elif state is TrayState.WARNING:  # exclamation mark
        yield _rectangle(w * 0.45, w * 0.22, w * 0.55, w * 0.56)
        yield _ellipse(w * 0.44, w * 0.64, w * 0.56, w * 0.76)
    elif state is TrayState.COVERED:  # a window with a closed shutter
        frame = line // 2
        x0, y0, x1, y1 = w * 0.28, w * 0.28, w * 0.72, w * 0.66
        yield _rectangle(x0, y0, x1, y0 + frame)
        yield _rectangle(x0, y1 - frame, x1, y1)
        yield _rectangle(x0, y0, x0 + frame, y1)
        yield _rectangle(x1 - frame, y0, x1, y1)
        for y in (0.40, 0.52):
            yield from _polyline([(w * 0.30, w * y), (w * 0.70, w * y)], frame)
    elif state is TrayState.BLOCKED:  # X
        yield from _polyline([(w * 0.32, w * 0.28), (w * 0.68, w * 0.66)], line)
        yield from _polyline([(w * 0.68, w * 0.28), (w * 0.32, w * 0.66)], line)
    elif state is TrayState.PAUSED:  # two bars
        yield _rectangle(w * 0.34, w * 0.26, w * 0.45, w * 0.66)
        yield _rectangle(w * 0.55, w * 0.26, w * 0.66, w * 0.66)
    elif state is TrayState.DEGRADED:  # a broken shield: a wavy line
        yield from _polyline(
            [
                (w * 0.28, w * 0.50),
                (w * 0.40, w * 0.36),
                (w * 0.52, w * 0.56),
                (w * 0.64, w * 0.36),
                (w * 0.72, w * 0.46),
            ],
            line,
        )


def _rectangle(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _ellipse(x0: float, y0: float, x1: float, y1: float, sides: int = 48) -> Polygon:
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return [
        (cx + rx * math.cos(2 * math.pi * i / sides), cy + ry * math.sin(2 * math.pi * i / sides))
        for i in range(sides)
    ]


def _polyline(points: Polygon, width: float) -> Iterator[Polygon]:
    """A line ``width`` wide through ``points``: one quadrilateral per segment, a disc at each inner joint."""
    half = width / 2
    for (x0, y0), (x1, y1) in pairwise(points):
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        nx, ny = -(y1 - y0) / length * half, (x1 - x0) / length * half
        yield [(x0 + nx, y0 + ny), (x1 + nx, y1 + ny), (x1 - nx, y1 - ny), (x0 - nx, y0 - ny)]
    for x, y in points[1:-1]:
        yield _ellipse(x - half, y - half, x + half, y + half, sides=24)


def _inset(polygon: Polygon, by: float) -> Polygon:
    """A convex polygon moved ``by`` inwards along each edge's normal (each corner where two moved edges meet)."""
    n = len(polygon)
    area = sum(
        polygon[i][0] * polygon[(i + 1) % n][1] - polygon[(i + 1) % n][0] * polygon[i][1] for i in range(n)
    )
    sign = 1.0 if area > 0 else -1.0
    lines: list[tuple[Point, Point]] = []
    for i in range(n):
        (x0, y0), (x1, y1) = polygon[i], polygon[(i + 1) % n]
        length = math.hypot(x1 - x0, y1 - y0)
        nx, ny = -(y1 - y0) / length * by * sign, (x1 - x0) / length * by * sign
        lines.append(((x0 + nx, y0 + ny), (x1 - x0, y1 - y0)))
    corners: list[Point] = []
    for i in range(n):
        (px, py), (dx, dy) = lines[i - 1]
        (qx, qy), (ex, ey) = lines[i]
        t = ((qx - px) * ey - (qy - py) * ex) / (dx * ey - dy * ex)
        corners.append((px + t * dx, py + t * dy))
    return corners


def _fill(img: Image.Image, polygons: Sequence[Polygon], colour: tuple[int, int, int]) -> None:
    """Lay ``colour`` onto ``img`` wherever a pixel's centre is inside one of ``polygons`` (even-odd rule)."""
    from PIL import Image

    width, height = img.size
    mask = bytearray(width * height)
    solid = b"\xff" * width
    for polygon in polygons:
        edges = list(zip(polygon, [*polygon[1:], polygon[0]], strict=True))
        for row in range(height):
            y = row + 0.5
            xs = sorted(
                x0 + (y - y0) * (x1 - x0) / (y1 - y0)
                for (x0, y0), (x1, y1) in edges
                if (y0 <= y < y1) or (y1 <= y < y0)
            )
            for left, right in zip(xs[::2], xs[1::2], strict=False):
                a = max(0, math.ceil(left - 0.5))
                b = min(width, math.ceil(right - 0.5))
                if b > a:
                    mask[row * width + a : row * width + b] = solid[: b - a]
    img.paste((*colour, 255), (0, 0, width, height), Image.frombytes("L", (width, height), bytes(mask)))
