"""Pure: the one renderer of the worker's texts (acknowledgement dialog, status window, notifications).

Texts come from the catalogs and from the policy, which IT writes in TOML with hard line breaks. Tk wraps a
``Message`` anywhere in Japanese and keeps the hard breaks, so "離席時は画面を保護し、/顧客データは VPN/経由で" and
"10/分後" reached workers. Here:

- :func:`paragraphs` joins the lines of a paragraph again (no space between two Japanese characters, one
  space otherwise); a blank line or a bullet line starts a new paragraph;
- :func:`segments` cuts a paragraph into pieces no line break may split: a Latin word, one Japanese character,
  a number with its unit ("10 分", "1 分 30 秒" breaks only between "1 分" and "30 秒", "15 min", "90%"), and
  the Japanese line-breaking rules (JIS X 4051 kinsoku): 、。」）ー and small kana never start a line, 「（ never
  end one;
- :func:`wrap` fills lines up to a width with any ``measure`` (Tk's ``Font.measure`` on screen, ``len`` in
  tests) and :func:`render` does all three.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

Measure = Callable[[str], float]

# Characters that must not begin a line (closing brackets, punctuation, prolonged sound mark, small kana).
NO_START = set(
    "、。，．,.・：；:;？！?!ー）)]｝}〕〉》」』】〙〗’”…‥ゝゞ々ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ%％"
)
# Characters that must not end a line (opening brackets).
NO_END = set("（([｛{〔〈《「『【〘〖‘“")
UNITS = (
    "時間",
    "分",
    "秒",
    "日",
    "件",
    "回",
    "台",
    "個",
    "版",
    "%",
    "％",
    "min",
    "sec",
    "ms",
    "s",
    "h",
    "d",
    "MB",
    "GB",
    "KB",
)
_UNIT = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_TOKEN = re.compile(
    rf"(?P<num>\d[\d,.:]*[ \u00a0]?(?:{_UNIT})(?![A-Za-z]))"  # a number and its unit: one piece
    r"|(?P<word>[^\s\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]+)"  # a Latin word, a URL, a path
    r"|(?P<space>\s+)"
    r"|(?P<char>.)",  # one Japanese character
    re.S,
)
_BULLET = re.compile(r"^\s*(?:[•・*\-–]|\d+[.)．])\s*")
_WIDE = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")


def _wide(ch: str) -> bool:
    return bool(_WIDE.match(ch))


def paragraphs(text: str) -> list[str]:
    """The paragraphs of ``text`` with their hard line breaks removed."""
    out: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if current:
                out.append(current)
            current = ""
            continue
        if current and _BULLET.match(line):
            out.append(current)
            current = ""
        if not current:
            current = line
        elif _wide(current[-1]) and _wide(line[0]):
            current += line  # Japanese has no spaces between words: a space here would show as a gap
        else:
            current += " " + line
    if current:
        out.append(current)
    return out


def segments(paragraph: str) -> list[str]:
    """Pieces of ``paragraph`` that no line break may split (spaces are their own pieces)."""
    pieces: list[str] = []
    for match in _TOKEN.finditer(paragraph):
        kind, piece = match.lastgroup, match.group(0)
        if kind == "num":
            piece = piece.replace(" ", "\u00a0")  # "10 分" shows its space but never breaks there
        if kind == "space":
            pieces.append(" ")
            continue
        if pieces and pieces[-1] != " " and (piece[0] in NO_START or pieces[-1][-1] in NO_END):
            pieces[-1] += piece
        else:
            pieces.append(piece)
    return pieces


def wrap(paragraph: str, width: float, measure: Measure = len) -> list[str]:
    """``paragraph`` in lines no wider than ``width`` (a piece wider than a line gets a line of its own)."""
    lines: list[str] = []
    line = ""
    for piece in segments(paragraph):
        if piece == " " and not line:
            continue
        candidate = line + piece
        if not line or measure(candidate.rstrip().replace("\u00a0", " ")) <= width:
            line = candidate
            continue
        lines.append(line.rstrip())
        line = "" if piece == " " else piece
    if line.strip():
        lines.append(line.rstrip())
    return [ln.replace("\u00a0", " ") for ln in lines]


def render(text: str, width: float, measure: Measure = len, bullet: str = "") -> str:
    """``text`` reflowed: each paragraph wrapped to ``width``; ``bullet`` before each paragraph, hanging."""
    blocks = []
    # The hanging indent as wide as the bullet in this font (a proportional space is narrower than "→ ").
    indent = " " * max(1, round(measure(bullet) / (measure(" ") or 1))) if bullet else ""
    for paragraph in paragraphs(text):
        body = _BULLET.sub("", paragraph) if bullet else paragraph
        lines = wrap(body, width - (measure(bullet) if bullet else 0), measure)
        blocks.append("\n".join((bullet if i == 0 else indent) + ln for i, ln in enumerate(lines)))
    return "\n".join(blocks)


def render_list(items: Iterable[str], width: float, measure: Measure = len, bullet: str = "• ") -> str:
    """Items as a bulleted list, each reflowed with a hanging indent."""
    return "\n".join(render(item, width, measure, bullet) for item in items)
