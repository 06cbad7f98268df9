"""The one renderer of worker texts (agent.ui.text): paragraphs reflowed, no break inside a number and its
unit, Japanese line-breaking rules (issue 12, item 1)."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from agent.ui.text import NO_END, NO_START, paragraphs, render, segments, wrap


def cells(text: str) -> int:
    """Width in terminal cells: a Japanese character is two (like the pixels of a CJK font, roughly)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


POLICY_TEXT = (
    "離席時は画面を保護し、\n顧客データは VPN\n経由でのみ表示してください。\n\n10 分後にロックします。"
)


def test_hard_line_breaks_inside_a_paragraph_are_joined() -> None:
    """Before: the policy's line breaks were kept and Tk wrapped again ("保護し、/顧客データは VPN/経由で")."""
    assert paragraphs(POLICY_TEXT) == [
        "離席時は画面を保護し、顧客データは VPN 経由でのみ表示してください。",
        "10 分後にロックします。",
    ]
    assert paragraphs("Keep customer data\ninside the company.\n- never on USB\n- never printed") == [
        "Keep customer data inside the company.",
        "- never on USB",
        "- never printed",
    ]


def test_a_number_never_parts_from_its_unit() -> None:
    """Before: "10/分後", "1 分 30/秒後"."""
    text = "操作がないと 10 分後に警告し、1 分 30 秒後に画面を隠します。After 15 min or 90% we lock."
    for width in range(8, 60):
        lines = wrap(text, width, cells)
        joined = "\n".join(lines)
        for bad in ("10\n", "\n分", "30\n", "\n秒", "15\n", "\nmin", "90\n", "\n%"):
            assert bad not in joined, (width, lines)
        assert "1 分 30 秒" in joined.replace("\n", " ") or "1 分 30 秒" in joined


def test_kinsoku_punctuation_never_starts_a_line_and_brackets_never_end_one() -> None:
    text = "同意すると「顧客データの画面」は、VPN に接続している間だけ表示されます。ご協力ください。"
    for width in range(6, 50):
        for line in wrap(text, width, cells):
            assert line[0] not in NO_START, (width, line)
            assert line[-1] not in NO_END, (width, line)


def test_lines_fit_the_width_when_they_can() -> None:
    rendered = render(POLICY_TEXT, 30, cells)
    assert all(cells(line) <= 30 for line in rendered.splitlines())
    assert "保護し、顧" in rendered.replace("\n", "")  # no space sneaked in between Japanese characters


def test_a_bullet_hangs() -> None:
    out = render("After 4 min without activity you are warned, after 5 min covered.", 24, len, bullet="• ")
    lines = out.splitlines()
    assert lines[0].startswith("• ") and all(line.startswith("  ") for line in lines[1:])


@given(
    st.text(alphabet="顧客データ画面、。「」 VPNabc1234567890分秒min%\n", max_size=120), st.integers(6, 40)
)
def test_wrapping_loses_no_character(text: str, width: int) -> None:
    for paragraph in paragraphs(text):
        lines = wrap(paragraph, width, cells)
        assert "".join(lines).replace(" ", "") == paragraph.replace(" ", "")
        assert "".join(segments(paragraph)).replace(" ", "").replace("\u00a0", "") == paragraph.replace(
            " ", ""
        )
