"""ja/en message catalogs.

Catalogs are TOML files in ``agent/i18n/messages/`` — one file per area (presence.toml, posture.toml, ...),
each a table per message key with ``ja`` and ``en`` strings using ``{name}`` placeholders::

    [cover.away]
    ja = "離席中のため非表示"
    en = "Hidden while you are away"

Keys are unique across files. The policy's ``[messages]`` section overrides any key per language.
"""

from __future__ import annotations

import locale
import logging
import os
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources

logger = logging.getLogger(__name__)

LANGUAGES = ("ja", "en")
DEFAULT_LANGUAGE = "en"


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, str]]:
    """All messages: key -> {lang: text}. Raises ValueError on a duplicate key or a missing language."""
    merged: dict[str, dict[str, str]] = {}
    folder = resources.files("agent.i18n") / "messages"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
        for key, texts in _flatten(data):
            if key in merged:
                raise ValueError(f"{entry.name}: message key {key!r} is defined twice")
            missing = [lang for lang in LANGUAGES if lang not in texts]
            if missing:
                raise ValueError(f"{entry.name}: message {key!r} lacks {', '.join(missing)}")
            merged[key] = {lang: str(texts[lang]) for lang in LANGUAGES}
    return merged


def _flatten(data: Mapping[str, object], prefix: str = "") -> list[tuple[str, Mapping[str, object]]]:
    out: list[tuple[str, Mapping[str, object]]] = []
    for name, value in data.items():
        if not isinstance(value, Mapping):
            continue
        key = f"{prefix}{name}"
        if any(lang in value for lang in LANGUAGES):
            nested = [k for k, v in value.items() if isinstance(v, Mapping)]
            if nested:
                # [a.b] with ja/en plus [a.b.c] would silently hide a.b.c: make it a load error instead.
                raise ValueError(
                    f"message {key!r} also has sub-tables {', '.join(nested)}; rename one of them"
                )
            out.append((key, value))
        else:
            out.extend(_flatten(value, key + "."))
    return out


def detect_language(override: str | None = None) -> str:
    """The worker's language: the agent.toml override, else the OS locale; ja or en."""
    if override in LANGUAGES:
        return str(override)
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    try:
        loc = locale.getlocale()[0] or ""
    except ValueError:
        loc = ""
    return "ja" if loc.lower().startswith("ja") else DEFAULT_LANGUAGE


class Translator:
    """Looks up messages in one language, with the policy's overrides applied first."""

    def __init__(self, language: str, overrides: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self._overrides = overrides or {}

    def __call__(self, key: str, **params: object) -> str:
        override = self._overrides.get(self.language, {}).get(key)
        if override is not None:
            try:
                return override.format(**params) if params else override
            except (KeyError, IndexError, ValueError):
                # A policy text with a placeholder this message does not have ({secs} for {seconds}) or a
                # stray brace: show the built-in text rather than fail where the message is needed (a cover
                # label, a notification). The key is logged, the text is the policy's and not worth repeating.
                logger.warning(
                    "policy message %s (%s) does not fit its placeholders; using the default",
                    key,
                    self.language,
                )
        texts = catalog().get(key)
        if texts is None:
            raise KeyError(f"unknown message key {key!r}")
        template = texts[self.language]
        return template.format(**params) if params else template

    def both(self, key: str, **params: object) -> dict[str, str]:
        """The message in every language (for details that carry ja and en)."""
        return {lang: Translator(lang, self._overrides)(key, **params) for lang in LANGUAGES}
