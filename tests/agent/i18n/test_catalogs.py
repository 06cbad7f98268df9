"""Catalog quality: both languages, same placeholders, no shadowed keys."""

from __future__ import annotations

import string

import pytest

from agent.i18n import Translator, _flatten, catalog, detect_language


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_message_has_both_languages_with_the_same_placeholders() -> None:
    for key, texts in catalog().items():
        assert texts["ja"].strip() and texts["en"].strip(), key
        assert _fields(texts["ja"]) == _fields(texts["en"]), key


def test_japanese_texts_are_japanese() -> None:
    # A ja text that is plain ASCII is almost always an untranslated copy (check names like "VPN" aside).
    ascii_ok = {"status.check.pass", "check.vpn", "doctor.ok", "notify.blocked.body"}
    for key, texts in catalog().items():
        if key.startswith(("tray.", "notify.", "ack.", "pause.", "doctor.fix.")) and key not in ascii_ok:
            assert not texts["ja"].isascii(), key


def test_message_with_subtables_is_rejected() -> None:
    with pytest.raises(ValueError, match="sub-tables"):
        _flatten({"a": {"ja": "x", "en": "y", "b": {"ja": "x", "en": "y"}}})


def test_detect_language(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    assert detect_language() == "ja"
    assert detect_language("en") == "en"
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    assert detect_language() == "en"


def test_override_only_in_its_language() -> None:
    t = Translator("ja", {"en": {"tray.menu.quit": "Exit"}})
    assert t("tray.menu.quit") == "終了"
    assert Translator("en", {"en": {"tray.menu.quit": "Exit"}})("tray.menu.quit") == "Exit"


@pytest.mark.parametrize("bad", ["あと {secs} 秒", "あと {0} 秒", "あと { 秒"])
def test_override_with_wrong_placeholders_falls_back_to_the_catalog(bad: str) -> None:
    # Before the fix a policy text with a wrong placeholder raised KeyError/IndexError/ValueError wherever the
    # message was needed (notifications, tray lines, cover labels).
    t = Translator("ja", {"ja": {"notify.countdown.body": bad}})
    assert t("notify.countdown.body", seconds=30) == Translator("ja")("notify.countdown.body", seconds=30)
    good = Translator("ja", {"ja": {"notify.countdown.body": "あと {seconds} 秒"}})
    assert good("notify.countdown.body", seconds=30) == "あと 30 秒"
