"""Which windows hold customer data (SPEC.md, ``[[customer_apps]]``). Pure: windows and rules in, matches out.

A window is customer data when its process matches one of the rule's ``processes`` (names or globs,
case-insensitive, ``.exe`` optional; an empty list matches any process) and its title matches the rule's
``title`` regex (absent: any title). The title is tried as the OS reports it and in NFKC form, so a rule
written ``Salesforce`` also matches a title in full-width letters ``Ｓａｌｅｓｆｏｒｃｅ``.

Only the rule name leaves this module's callers (events, status); titles never do.
"""

from __future__ import annotations

import fnmatch
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.platform.base import Window
from policy.model import CustomerApp


@dataclass(frozen=True)
class Match:
    window: Window
    rule: str  # the rule name: the only thing reported about the window


def _normalize_process(name: str) -> str:
    name = name.strip().lower()
    # Windows reports "EXCEL.EXE", a policy may say "excel"; macOS reports app names like "Microsoft Excel".
    return name.removesuffix(".exe")


def process_matches(pattern: str, process_name: str) -> bool:
    """Case-insensitive glob match of one rule pattern against a process name, ``.exe`` optional."""
    if not process_name:
        return False
    return fnmatch.fnmatchcase(_normalize_process(process_name), _normalize_process(pattern))


def title_matches(rule: CustomerApp, title: str) -> bool:
    if rule.title is None:
        return True
    if rule.title.search(title):
        return True
    folded = unicodedata.normalize("NFKC", title)
    return folded != title and rule.title.search(folded) is not None


def rule_matches(rule: CustomerApp, window: Window) -> bool:
    if rule.processes and not any(process_matches(p, window.process_name) for p in rule.processes):
        return False
    return title_matches(rule, window.title)


def coverable(window: Window) -> bool:
    """Minimized or empty windows show nothing and need no cover."""
    return not window.minimized and window.rect.width > 0 and window.rect.height > 0


def match_windows(rules: Sequence[CustomerApp], windows: Iterable[Window]) -> list[Match]:
    """Every visible customer-data window with the first rule that matched it, in the windows' order."""
    out: list[Match] = []
    for window in windows:
        if not coverable(window):
            continue
        for rule in rules:
            if rule_matches(rule, window):
                out.append(Match(window, rule.name))
                break
    return out
