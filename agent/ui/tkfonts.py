"""A Tk font that can draw Japanese on every OS (Tk's default font often has no CJK glyphs on Linux)."""

from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont

# First installed family wins. Linux: IPA / Noto CJK; Windows: Yu Gothic UI / Meiryo; macOS: Hiragino.
CJK_FAMILIES = (
    "IPAPGothic",
    "IPAGothic",
    "IPAexGothic",
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "Yu Gothic UI",
    "Meiryo UI",
    "Meiryo",
    "Hiragino Sans",
    "Hiragino Kaku Gothic ProN",
    "TakaoPGothic",
    "VL PGothic",
)

_chosen: dict[str, str] = {}  # one lookup per process: tkfont.families() is slow with many fonts


def ui_family(widget: tk.Misc) -> str:
    if "family" not in _chosen:
        installed = set(tkfont.families(widget))
        _chosen["family"] = next((f for f in CJK_FAMILIES if f in installed), "TkDefaultFont")
    return _chosen["family"]


def ui_font(widget: tk.Misc, size: int = 11, bold: bool = False) -> tuple[str, int] | tuple[str, int, str]:
    family = ui_family(widget)
    return (family, size, "bold") if bold else (family, size)
